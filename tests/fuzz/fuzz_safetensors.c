/* fuzz_safetensors.c — libFuzzer target for the safetensors reader: any bytes, opened as a
 * .safetensors file, every tensor loaded (see fuzz_weights.h). Seeds: corpus/fuzz_safetensors/.
 */
#include "fuzz_weights.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_weights(data, size, ".safetensors");
}
