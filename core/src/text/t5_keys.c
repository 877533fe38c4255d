/*
 * Checkpoint key layouts of the umT5 encoder, mapped onto the original Wan
 * names (wan/modules/t5.py), which vd_t5_load looks up.
 *
 * HF's UMT5EncoderModel (diffusers text_encoder/, the repackaged single
 * files) differs in names only: its relative_attention_bias is the same
 * [num_buckets, num_heads] embedding, wi_0 is the GELU gate and wi_1 the
 * linear branch (HF: act(wi_0 x) * wi_1 x; Wan: fc1(x) * gelu(gate(x))).
 * fp8 companions (".scale_weight", ".scale_input") follow their module.
 */
#include <stdio.h>
#include <string.h>

#include "text.h"

static const vd_keyrule hf_rules[] = {
    { "shared.weight", "token_embedding.weight" },
    { "encoder.embed_tokens.weight", "token_embedding.weight" },
    { "encoder.final_layer_norm.weight", "norm.weight" },
    { "encoder.block.#.layer.0.SelfAttention.relative_attention_bias.weight",
      "blocks.#.pos_embedding.embedding.weight" },
    { "encoder.block.#.layer.0.SelfAttention.*", "blocks.#.attn.*" },
    { "encoder.block.#.layer.0.layer_norm.weight", "blocks.#.norm1.weight" },
    { "encoder.block.#.layer.1.DenseReluDense.wi_0.*", "blocks.#.ffn.gate.0.*" },
    { "encoder.block.#.layer.1.DenseReluDense.wi_1.*", "blocks.#.ffn.fc1.*" },
    { "encoder.block.#.layer.1.DenseReluDense.wo.*", "blocks.#.ffn.fc2.*" },
    { "encoder.block.#.layer.1.layer_norm.weight", "blocks.#.norm2.weight" },
};

/* The tied copy HF files may carry beside shared.weight. */
static const vd_keyrule hf_tied[] = {
    { "encoder.embed_tokens.weight", "unused.encoder.embed_tokens.weight" },
};

static const char *const anchors[] = { "token_embedding.weight", "encoder.final_layer_norm.weight" };

int vd_t5_canonicalize(vd_ckpt *ck, vd_log *lg)
{
    if (!ck)
        return vd_err(lg, VDIT_ERR_INVALID_ARG, "vd_t5_canonicalize: no checkpoint");
    if (!vd_ckpt_find(ck, anchors[0]) && !vd_ckpt_find(ck, anchors[1])) {
        /* a prefix: the part before the one name ending in an anchor */
        const char *found = NULL;
        size_t found_al = 0;
        for (size_t a = 0; a < VD_ARRAY_SIZE(anchors); a++) {
            size_t al = strlen(anchors[a]);
            for (size_t i = 0; i < vd_ckpt_count(ck); i++) {
                const char *n = vd_ckpt_at(ck, i)->name;
                size_t nl = strlen(n);
                if (nl > al && !strcmp(n + nl - al, anchors[a]) && n[nl - al - 1] == '.') {
                    if (found)
                        return vd_err(lg, VDIT_ERR_FORMAT,
                                      "%s: '%s' and '%s': more than one text encoder here",
                                      vd_ckpt_label(ck), found, n);
                    found = n;
                    found_al = al;
                }
            }
        }
        if (!found)
            return vd_err(lg, VDIT_ERR_MISSING,
                          "%s: no 'token_embedding.weight' nor 'encoder.final_layer_norm.weight': "
                          "not a umT5 encoder checkpoint",
                          vd_ckpt_label(ck));
        char prefix[256];
        size_t pl = strlen(found) - found_al;
        if (pl >= sizeof(prefix))
            return vd_err(lg, VDIT_ERR_FORMAT, "%s: key prefix too long", vd_ckpt_label(ck));
        memcpy(prefix, found, pl);
        prefix[pl] = 0;
        int rc = vd_ckpt_strip_prefix(ck, prefix, lg);
        if (rc)
            return rc;
    }
    if (!vd_ckpt_find(ck, "encoder.final_layer_norm.weight"))
        return 0; /* original names */
    int rc = 0;
    if (vd_ckpt_find(ck, "shared.weight") && vd_ckpt_find(ck, "encoder.embed_tokens.weight"))
        rc = vd_ckpt_rename(ck, hf_tied, VD_ARRAY_SIZE(hf_tied), lg);
    if (!rc)
        rc = vd_ckpt_rename(ck, hf_rules, VD_ARRAY_SIZE(hf_rules), lg);
    return rc;
}
