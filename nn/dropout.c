/* dropout.c — the training mode modules share: dropout that is on only while the model trains,
 * each call drawing its mask from the mode's seed and how many masks were drawn before it.
 */
#include "kg_nn.h"

/* SplitMix64's finalizer: neighbouring (seed, draw) pairs give unrelated mask seeds. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

kg_tensor *kg_mode_dropout(kg_mode *mode, kg_tensor *x, float p)
{
    if (!x || !mode || !mode->training || p <= 0.0f)
        return x;
    return kg_dropout(x, p, mix64(mode->seed ^ mix64(mode->draws++)));
}
