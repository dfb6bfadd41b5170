/* test_vec_math.c — expf and erff over arrays (tensor/cpu/vec_math.c), the calls of the
 * elementwise kernels: on each vector path (libmvec's AVX-512 and AVX2 variants, where this CPU
 * and build have them) and on libm's, against double exp and erf, on the whole float range with inf, NaN,
 * zeros of both signs and subnormal results; and an element's result the same wherever in the
 * array it sits (the last partial group of 16 goes through a padded copy).
 *
 * Bound: within 4 ulp of the double result, an ulp being that of the correctly rounded float
 * result (glibc documents libmvec's variants to 4 ulp; libm's scalar ones are within 1).
 * Results below the smallest normal float are held to 4 ulp of the smallest subnormal spacing.
 * Also dropout's keep factors (cpu/dropout_mask.c), vectorized the same way: exact.
 */
#include "kg_test.h"
#include "tensor/cpu/cpu.h"

#include <math.h>

static kg_exp_path paths[3];
static int n_paths;
static const char *const path_name[] = {"libm", "AVX2", "AVX-512"};

/* Every path this CPU and build run: libm, and each vector path up to the best. */
static int setup(void **state)
{
    (void)state;
    paths[n_paths++] = KG_EXP_SCALAR;
    for (kg_exp_path p = KG_EXP_AVX2; p <= KG_EXP_AVX512; p++) {
        kg_cpu_exp_cap(p);
        if (kg_cpu_exp_path() == p && kg_cpu_vec_math())
            paths[n_paths++] = p;
        else
            print_message("no libmvec %s path on this CPU or build\n", path_name[p]);
    }
    kg_cpu_exp_cap(KG_EXP_AVX512);
    return 0;
}

/* The ulps between a float result and the double one. */
static double ulps(float got, double want)
{
    if (isnan(want))
        return isnan(got) ? 0.0 : INFINITY;
    if (isinf(want) || (float)want == 0.0f || isinf((float)want))
        return got == (float)want ? 0.0 : fabs(got - want) / ldexp(1.0, -149);
    int e;
    frexp((float)want, &e);
    double ulp = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
    return fabs((double)got - want) / ulp;
}

typedef void (*vec_fn)(float *v, int64_t n);

/* x over the range, the specials first, through f on each path: within 4 ulp of want(x). */
static void check(vec_fn f, double (*want)(double), const char *name, float lo, float hi)
{
    enum { N = 100003 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -1e-30f, 1e-8f,
                             -87.5f, -103.0f, -104.0f, -120.0f, 88.0f, 88.8f, 1e30f, -1e30f};
    int ns = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < ns; i++)
        x[i] = special[i];
    uint32_t seed = 11;
    for (int64_t i = ns; i < N; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = lo + (hi - lo) * (float)(seed >> 8) * (1.0f / 16777216.0f);
    }
    for (int p = 0; p < n_paths; p++) {
        kg_cpu_exp_cap(paths[p]);
        memcpy(y, x, sizeof(float) * N);
        f(y, N);
        double worst = 0.0;
        for (int64_t i = 0; i < N; i++) {
            double u = ulps(y[i], want((double)x[i]));
            worst = u > worst ? u : worst;
            if (u > 4.0)
                fail_msg("%s(%a) on the %s path = %a; double gives %a (%.1f ulp; expected <= 4)",
                         name, (double)x[i], path_name[paths[p]], (double)y[i],
                         want((double)x[i]), u);
        }
        print_message("%s on the %s path: worst %.2f ulp\n", name, path_name[paths[p]], worst);
        /* the same value at every place in an array of 37 (groups of 16 or 8, then a tail) */
        float v[37], first;
        for (int i = 0; i < 37; i++)
            v[i] = x[ns + 5];
        f(v, 37);
        first = v[0];
        for (int i = 1; i < 37; i++)
            assert_true(memcmp(&v[i], &first, sizeof first) == 0);
    }
    kg_cpu_exp_cap(KG_EXP_AVX512);
    free(x);
    free(y);
}

static void test_expf(void **state)
{
    (void)state;
    check(kg_cpu_expf_inplace, exp, "expf", -110.0f, 89.0f);
    check(kg_cpu_expf_inplace, exp, "expf", -1.0f, 1.0f);
}

static void test_erff(void **state)
{
    (void)state;
    check(kg_cpu_erff_inplace, erf, "erff", -6.0f, 6.0f);
    check(kg_cpu_erff_inplace, erf, "erff", -0.01f, 0.01f);
}

/* Dropout's keep factors (cpu/dropout_mask.c) on each path: bit for bit the draw every backend
 * makes, kg__uniform01(seed, index) >= p, at any length and offset (indices past 2³² too); and
 * over 10⁶ draws the kept fraction within 0.002 of 1 - p (4 standard deviations at p = 0.5). */
static void test_dropout_mask(void **state)
{
    (void)state;
    enum { N = 1000000 };
    float *f = malloc(sizeof(float) * N);
    assert_non_null(f);
    const uint64_t starts[] = {0, 12345, (1ull << 32) - 3};
    const int64_t lens[] = {1, 7, 255, 256, 1000};
    const float ps[] = {0.1f, 0.5f};
    for (kg_exp_path path = KG_EXP_SCALAR; path <= KG_EXP_AVX512; path++) {
        kg_cpu_exp_cap(path); /* the mask's paths need no libmvec: every one the CPU runs */
        if (kg_cpu_exp_path() != path)
            continue;
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < 5; b++)
                for (size_t c = 0; c < 2; c++) {
                    float p = ps[c], keep = 1.0f / (1.0f - p);
                    kg_cpu_dropout_mask(f, lens[b], 77, starts[a], p, keep);
                    for (int64_t k = 0; k < lens[b]; k++) {
                        float want = kg__uniform01(77, starts[a] + (uint64_t)k) >= p ? keep : 0.0f;
                        if (f[k] != want)
                            fail_msg("dropout mask (%s path): element %lld of %lld from %llu is "
                                     "%g; expected %g", path_name[path], (long long)k,
                                     (long long)lens[b], (unsigned long long)starts[a],
                                     (double)f[k], (double)want);
                    }
                }
        for (size_t c = 0; c < 2; c++) {
            kg_cpu_dropout_mask(f, N, 5, 3, ps[c], 2.0f);
            int64_t kept = 0;
            for (int64_t k = 0; k < N; k++)
                kept += f[k] != 0.0f;
            double frac = (double)kept / N;
            if (fabs(frac - (1.0 - ps[c])) > 0.002)
                fail_msg("dropout mask: kept %.4f of the elements at p = %g; expected %.4f",
                         frac, (double)ps[c], 1.0 - ps[c]);
        }
    }
    kg_cpu_exp_cap(KG_EXP_AVX512);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf),
        cmocka_unit_test(test_erff),
        cmocka_unit_test(test_dropout_mask),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
