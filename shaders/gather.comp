#version 450
// gather.comp — ops indexed by i32 ids: embedding (gather rows), scatter_add_rows (its adjoint;
// one invocation owns a column and adds the rows in order, so no atomics and a fixed sum order)
// and one_hot. An id out of range is written to the status buffer and reported at the flush.
// addr: 0 out, 1 table / src, 2 ids, 3 status
// u: 0 mode, 1 ids count, 2 C (columns or classes), 3 limit (rows of table / out), 4 ignore
//    index (one_hot), 5 kg_op (for errors)
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "codes.h"

layout(local_size_x = 256) in;

void main() {
    uint mode = pc.u[0], n = pc.u[1], C = pc.u[2], limit = pc.u[3];
    uint e = flat_id(256);
    F32 dst = F32(pc.addr[0]), src = F32(pc.addr[1]);
    I32 ids = I32(pc.addr[2]);
    if (mode == GA_SCATTER_ADD_ROWS) {
        if (e >= C)
            return;
        for (uint r = 0; r < limit; r++)
            dst.v[r * C + e] = 0.0;
        for (uint i = 0; i < n; i++) {
            int id = ids.v[i];
            if (id < 0 || id >= int(limit)) {
                if (e == 0)
                    report_range(pc.addr[3], pc.u[5], int(i), id, int(limit));
                continue;
            }
            dst.v[uint(id) * C + e] += src.v[i * C + e];
        }
        return;
    }
    if (e >= n * C)
        return;
    uint i = e / C, j = e % C;
    int id = ids.v[i];
    if (mode == GA_ONE_HOT) {
        bool ignored = id == si(4);
        if (!ignored && (id < 0 || id >= int(C))) {
            if (j == 0)
                report_range(pc.addr[3], pc.u[5], int(i), id, int(C));
            ignored = true;
        }
        dst.v[e] = !ignored && uint(id) == j ? 1.0 : 0.0;
        return;
    }
    if (id < 0 || id >= int(limit)) {
        if (j == 0)
            report_range(pc.addr[3], pc.u[5], int(i), id, int(limit));
        dst.v[e] = 0.0;
        return;
    }
    dst.v[e] = src.v[uint(id) * C + j];
}
