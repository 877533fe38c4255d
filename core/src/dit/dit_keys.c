/*
 * Checkpoint key layouts of the Wan2.1 DiT, mapped onto the original names
 * (those of wan/modules/model.py, which the model code looks up).
 *
 * Layouts seen in the wild:
 *  - original names in single or sharded safetensors (official release);
 *  - the same names behind a prefix, e.g. "model.diffusion_model." in the
 *    repackaged single files (wan2.1_t2v_1.3B_fp16.safetensors);
 *  - diffusers' WanTransformer3DModel (transformer/ folder with sharded
 *    diffusion_pytorch_model-0000N-of-0000M.safetensors and an index).
 *
 * The diffusers table is the inverse of the renaming diffusers' conversion
 * script applies; two names need care: diffusers swaps norm2/norm3 (its
 * norm2 is the affine LayerNorm before cross-attention, the original norm3;
 * the original norm2 has no parameters), and uses one name
 * "scale_shift_table" for both the head modulation (top level, [1, 2, dim])
 * and the block modulation (blocks.N., [1, 6, dim]).
 */
#include <stdio.h>
#include <string.h>

#include "dit.h"

static const vd_keyrule diffusers_rules[] = {
    { "condition_embedder.time_embedder.linear_1.*", "time_embedding.0.*" },
    { "condition_embedder.time_embedder.linear_2.*", "time_embedding.2.*" },
    { "condition_embedder.time_proj.*", "time_projection.1.*" },
    { "condition_embedder.text_embedder.linear_1.*", "text_embedding.0.*" },
    { "condition_embedder.text_embedder.linear_2.*", "text_embedding.2.*" },
    { "condition_embedder.image_embedder.norm1.*", "img_emb.proj.0.*" },
    { "condition_embedder.image_embedder.ff.net.0.proj.*", "img_emb.proj.1.*" },
    { "condition_embedder.image_embedder.ff.net.2.*", "img_emb.proj.3.*" },
    { "condition_embedder.image_embedder.norm2.*", "img_emb.proj.4.*" },
    { "scale_shift_table", "head.modulation" },
    { "proj_out.*", "head.head.*" },
    { "blocks.#.scale_shift_table", "blocks.#.modulation" },
    { "blocks.#.attn1.to_q.*", "blocks.#.self_attn.q.*" },
    { "blocks.#.attn1.to_k.*", "blocks.#.self_attn.k.*" },
    { "blocks.#.attn1.to_v.*", "blocks.#.self_attn.v.*" },
    { "blocks.#.attn1.to_out.0.*", "blocks.#.self_attn.o.*" },
    { "blocks.#.attn1.norm_q.*", "blocks.#.self_attn.norm_q.*" },
    { "blocks.#.attn1.norm_k.*", "blocks.#.self_attn.norm_k.*" },
    { "blocks.#.attn2.to_q.*", "blocks.#.cross_attn.q.*" },
    { "blocks.#.attn2.to_k.*", "blocks.#.cross_attn.k.*" },
    { "blocks.#.attn2.to_v.*", "blocks.#.cross_attn.v.*" },
    { "blocks.#.attn2.to_out.0.*", "blocks.#.cross_attn.o.*" },
    { "blocks.#.attn2.norm_q.*", "blocks.#.cross_attn.norm_q.*" },
    { "blocks.#.attn2.norm_k.*", "blocks.#.cross_attn.norm_k.*" },
    { "blocks.#.attn2.add_k_proj.*", "blocks.#.cross_attn.k_img.*" },
    { "blocks.#.attn2.add_v_proj.*", "blocks.#.cross_attn.v_img.*" },
    { "blocks.#.attn2.norm_added_k.*", "blocks.#.cross_attn.norm_k_img.*" },
    { "blocks.#.norm2.*", "blocks.#.norm3.*" },
    { "blocks.#.ffn.net.0.proj.*", "blocks.#.ffn.0.*" },
    { "blocks.#.ffn.net.2.*", "blocks.#.ffn.2.*" },
};

/* Every layout has the patch embedding under this name (after its prefix). */
static const char anchor[] = "patch_embedding.weight";

int vd_dit_drop_wrappers(vd_ckpt *ck, vd_log *lg, int *dropped)
{
    /* FSDP, activation checkpointing and torch.compile wrap modules, and
     * state dicts saved through them carry the wrapper in the names
     * wherever it wrapped one */
    static const char *const wrappers[] = { "_fsdp_wrapped_module.",
                                            "_checkpoint_wrapped_module.", "_orig_mod." };
    return vd_ckpt_drop_segments(ck, wrappers, VD_ARRAY_SIZE(wrappers), lg, dropped);
}

int vd_dit_canonicalize(vd_ckpt *ck, vd_log *lg)
{
    if (!ck)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_dit_canonicalize: no checkpoint");
    int ret = vd_dit_drop_wrappers(ck, lg, NULL);
    if (ret)
        return ret;
    if (!vd_ckpt_find(ck, anchor)) {
        /* A prefix: the part before the one name ending in the anchor. */
        const char *found = NULL;
        size_t al = strlen(anchor);
        for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
            const char *n = vd_ckpt_at(ck, i)->name;
            size_t nl = strlen(n);
            if (nl > al && !strcmp(n + nl - al, anchor) && n[nl - al - 1] == '.') {
                if (found)
                    return vd_err(lg, VDIT_ERR_FORMAT,
                                  "%s: several tensors named '*%s' ('%s', '%s'): more than one "
                                  "model in this checkpoint",
                                  vd_ckpt_label(ck), anchor, found, n);
                found = n;
            }
        }
        if (!found)
            return vd_err(lg, VDIT_ERR_MISSING,
                          "%s: no tensor '%s': not a Wan2.1 diffusion transformer checkpoint",
                          vd_ckpt_label(ck), anchor);
        char prefix[256];
        size_t pl = strlen(found) - al;
        if (pl >= sizeof(prefix))
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: key prefix of '%s' too long",
                          vd_ckpt_label(ck), found);
        memcpy(prefix, found, pl);
        prefix[pl] = 0;
        if ((ret = vd_ckpt_strip_prefix(ck, prefix, lg)))
            return ret;
    }
    if (vd_ckpt_find(ck, "condition_embedder.time_embedder.linear_1.weight") ||
        vd_ckpt_find(ck, "proj_out.weight"))
        return vd_ckpt_rename(ck, diffusers_rules, VD_ARRAY_SIZE(diffusers_rules), lg);
    return 0;
}

int vd_dit_key_from_diffusers(const char *name, char *out, size_t outsz)
{
    for (size_t i = 0; i < VD_ARRAY_SIZE(diffusers_rules); i++)
        if (vd_key_rewrite(name, diffusers_rules[i].from, diffusers_rules[i].to, out, outsz))
            return 1;
    return 0;
}

int vd_dit_key_to_diffusers(const char *name, char *out, size_t outsz)
{
    /* The rules read backwards; the first whose original side matches. */
    for (size_t i = 0; i < VD_ARRAY_SIZE(diffusers_rules); i++)
        if (vd_key_rewrite(name, diffusers_rules[i].to, diffusers_rules[i].from, out, outsz))
            return 1;
    return 0;
}
