/* fuzz_gguf.c — libFuzzer target for the GGUF reader: any bytes, opened as a .gguf file, every
 * tensor loaded and the metadata getters called (see fuzz_weights.h). Seeds: corpus/fuzz_gguf/.
 */
#include "fuzz_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_weights(data, size, ".gguf");
}
