// spm_shim.cc — the C interface of spm.h over libsentencepiece's SentencePieceProcessor. Every
// call catches what the library or the allocator may throw, so C callers only see return values.
#include "models/spm.h"

#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

struct kg__spm {
    sentencepiece::SentencePieceProcessor proc;
};

extern "C" kg__spm *kg__spm_load(const char *data, size_t n, char *err, size_t errlen)
{
    try {
        kg__spm *s = new kg__spm;
        auto st = s->proc.LoadFromSerializedProto(std::string(data, n));
        if (!st.ok()) {
            std::snprintf(err, errlen, "%s", st.ToString().c_str());
            delete s;
            return nullptr;
        }
        return s;
    } catch (const std::exception &e) {
        std::snprintf(err, errlen, "%s", e.what());
    } catch (...) {
        std::snprintf(err, errlen, "sentencepiece failed");
    }
    return nullptr;
}

extern "C" void kg__spm_free(kg__spm *s)
{
    delete s;
}

extern "C" bool kg__spm_encode(const kg__spm *s, const char *text, size_t n, int32_t **ids,
                               int64_t *len, int64_t *cap)
{
    try {
        std::vector<int> out;
        if (!s->proc.Encode(std::string(text, n), &out).ok())
            return false;
        int64_t need = *len + (int64_t)out.size();
        if (need > *cap) {
            int64_t c = need > 2 * *cap ? need : 2 * *cap;
            void *p = std::realloc(*ids, (size_t)c * sizeof(int32_t));
            if (!p)
                return false;
            *ids = (int32_t *)p;
            *cap = c;
        }
        for (int id : out)
            (*ids)[(*len)++] = id;
        return true;
    } catch (...) {
        return false;
    }
}

extern "C" char *kg__spm_decode(const kg__spm *s, const int32_t *ids, int64_t n)
{
    try {
        std::vector<int> in(ids, ids + n);
        std::string text;
        if (!s->proc.Decode(in, &text).ok())
            return nullptr;
        char *out = (char *)std::malloc(text.size() + 1);
        if (out)
            std::memcpy(out, text.c_str(), text.size() + 1);
        return out;
    } catch (...) {
        return nullptr;
    }
}

extern "C" int32_t kg__spm_size(const kg__spm *s)
{
    return s->proc.GetPieceSize();
}

extern "C" const char *kg__spm_piece(const kg__spm *s, int32_t id, size_t *len)
{
    const std::string &p = s->proc.IdToPiece(id);
    *len = p.size();
    return p.c_str();
}

extern "C" bool kg__spm_is_control(const kg__spm *s, int32_t id)
{
    return s->proc.IsControl(id);
}

extern "C" void kg__spm_specials(const kg__spm *s, int32_t *bos, int32_t *eos, int32_t *unk,
                                 int32_t *pad)
{
    *bos = s->proc.bos_id();
    *eos = s->proc.eos_id();
    *unk = s->proc.unk_id();
    *pad = s->proc.pad_id();
}
