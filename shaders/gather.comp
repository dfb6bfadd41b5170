#version 450
// gather.comp — ops indexed by i32 ids: embedding (gather rows), scatter_add_rows (its adjoint;
// one invocation owns a column and adds the rows in order, so no atomics and a fixed sum order)
// and one_hot. An id out of range is written to the status buffer and reported at the flush.
// Push constants: gather_push (push.h).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform Push { gather_push pc; };
layout(local_size_x = 256) in;

// dst (limit, C), zeroed by a GA_ZERO pass: column e of src's rows first .. first + KG_LOOP_CHUNK
// added into the rows their ids name (ops.c runs one pass per run of ids).
void scatter_add_rows(uint e) {
    F32 dst = F32(pc.dst), src = F32(pc.src);
    I32 ids = I32(pc.ids);
    uint C = pc.C, limit = pc.limit;
    if (e >= C)
        return;
    for (uint i = pc.first; i < min(pc.n, pc.first + KG_LOOP_CHUNK); i++) {
        int id = ids.v[i];
        if (id < 0 || id >= int(limit)) {
            if (e == 0)
                report_range(pc.status, pc.op, int(i), id, int(limit));
            continue;
        }
        dst.v[uint(id) * C + e] += src.v[i * C + e];
    }
}

// Element (i, j) of one_hot: 1 where j is the id of position i.
float one_hot(uint i, uint j, int id) {
    bool ignored = id == pc.ignore_index;
    if (!ignored && (id < 0 || id >= int(pc.C))) {
        if (j == 0)
            report_range(pc.status, pc.op, int(i), id, int(pc.C));
        ignored = true;
    }
    return !ignored && uint(id) == j ? 1.0 : 0.0;
}

// Element (i, j) of embedding: row id of the table.
float embedding(uint i, uint j, int id) {
    if (id < 0 || id >= int(pc.limit)) {
        if (j == 0)
            report_range(pc.status, pc.op, int(i), id, int(pc.limit));
        return 0.0;
    }
    return F32(pc.src).v[uint(id) * pc.C + j];
}

void main() {
    uint e = flat_id(256);
    if (pc.mode == GA_SCATTER_ADD_ROWS) { // one invocation per column, not per element
        scatter_add_rows(e);
        return;
    }
    if (pc.mode == GA_ZERO) {
        if (e < pc.n)
            F32(pc.dst).v[e] = 0.0;
        return;
    }
    if (e >= pc.n * pc.C)
        return;
    uint i = e / pc.C, j = e % pc.C;
    int id = I32(pc.ids).v[i];
    float y;
    switch (pc.mode) {
    case GA_EMBEDDING: y = embedding(i, j, id); break;
    case GA_ONE_HOT: y = one_hot(i, j, id); break;
    default: y = bad_mode(pc.status, pc.op, pc.mode); break;
    }
    F32(pc.dst).v[e] = y;
}
