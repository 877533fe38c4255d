/* libFuzzer target: a LoRA file (safetensors bytes) merged into a small
 * fixed set of DiT weights of every stored type (F32, F16, BF16, fp8 with a
 * scale, a conv kernel, a modulation table): the key normalisation, the
 * checks and the merge on whatever the parser accepts. A refusal is fine; a
 * crash, a bad read or a leak is not. */
#include "ckpt.h"
#include "dit/dit.h"
#include "fuzz.h"

enum { D = 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float q[D * D], qb[D], mod[6 * D], n3[D], ffb[2 * D];
    static uint16_t pe[D * 4 * 4], ff[2 * D * D];
    static uint8_t head[2 * D * D];
    static float head_scale = 0.5f;
    for (int i = 0; i < D * D; i++)
        q[i] = (float)(i % 7) * 0.25f - 0.5f;
    for (int i = 0; i < D; i++)
        qb[i] = n3[i] = 1.0f / (float)(i + 1);
    for (int i = 0; i < 6 * D; i++)
        mod[i] = (float)i * 0.01f;
    for (int i = 0; i < 2 * D; i++)
        ffb[i] = 0.125f;
    for (int i = 0; i < D * 16; i++)
        pe[i] = vt_f32_to_f16((float)(i % 5) * 0.1f);
    for (int i = 0; i < 2 * D * D; i++) {
        ff[i] = vt_f32_to_bf16((float)(i % 3) - 1.0f);
        head[i] = (uint8_t)(0x30 + i % 16);
    }
    const struct {
        const char *name;
        vt_dtype t;
        int nd;
        int64_t sh[5];
        const void *p;
    } ws[] = {
        { "blocks.0.self_attn.q.weight", VT_F32, 2, { D, D }, q },
        { "blocks.0.self_attn.q.bias", VT_F32, 1, { D }, qb },
        { "blocks.0.modulation", VT_F32, 3, { 1, 6, D }, mod },
        { "blocks.0.norm3.weight", VT_F32, 1, { D }, n3 },
        { "blocks.0.ffn.0.weight", VT_BF16, 2, { 2 * D, D }, ff },
        { "blocks.0.ffn.0.bias", VT_F32, 1, { 2 * D }, ffb },
        { "patch_embedding.weight", VT_F16, 5, { D, 4, 1, 2, 2 }, pe },
        { "head.head.weight", VT_F8_E4M3, 2, { 2 * D, D }, head },
        { "head.head.scale_weight", VT_F32, 0, { 0 }, &head_scale },
    };
    vd_log lg = { 0 };
    vd_ckpt *dit = vd_ckpt_new(), *lora = vd_ckpt_new();
    int ok = dit && lora;
    for (size_t i = 0; ok && i < sizeof(ws) / sizeof(ws[0]); i++)
        ok = !vd_ckpt_add(dit, ws[i].name, ws[i].t, ws[i].nd, ws[i].sh, ws[i].p, NULL, "dit", &lg);
    if (ok && vd_ckpt_add_safetensors_mem(lora, data, size, "fuzz", &lg) == 0) {
        const char *label = "fuzz";
        const float scale = 0.5f;
        if (vd_dit_merge_lora_sets(dit, &lora, &label, &scale, 1, 1, &lg) == 0)
            fuzz_touch_all(dit);
    }
    vd_ckpt_free(&lora);
    vd_ckpt_free(&dit);
    return 0;
}
