"""Writes the behaviour tests' inputs from the procedural generator.

usage: /usr/bin/python3 tests/model/mkfixtures.py prompts  > tests/model/prompts.txt
       /usr/bin/python3 tests/model/mkfixtures.py clips OUT.bin   (at build time)

prompts: data.gen.test_prompts(24): single-object (colour, shape, motion)
  triples that gen.held_out() keeps out of training, on solid backgrounds,
  so no caption is one the model saw verbatim. One line each:
  "colour<TAB>direction<TAB>prompt".
clips: ground-truth renders for the detector's own test: each prompt's clip
  at the generator's and the DiT's sizes and both lengths (cycled), plus growing / shrinking / still objects.
  Each clip is a text line "w h t colour direction\n" then t*h*w*3 RGB bytes.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "models"))
from data import gen  # noqa: E402


# the generator's sizes and the DiT's training sizes; both clip lengths
SIZES = [(64, 64), (80, 48), (48, 80), (64, 48), (48, 64)]
LENGTHS = [9, 17]


def spec(colour, shape, motion, bg, wh, seed, size="", frames=17):
    return {"w": wh[0], "h": wh[1], "frames": frames,
            "objects": [{"colour": colour, "shape": shape, "motion": motion, "size": size}],
            "bg": {"kind": "solid", "c1": bg, "c2": bg, "phase": 0, "period": 8, "angle": 0},
            "pan": None, "seed": seed}


def main():
    tp = gen.test_prompts(24)
    if sys.argv[1] == "prompts":
        for q in tp:
            print("%s\t%s\t%s" % (q["colour"], q["motion"][6:], q["prompt"]))
        return
    out = open(sys.argv[2], "wb")
    clips = []
    for i, q in enumerate(tp):
        wh = SIZES[i % len(SIZES)]
        clips.append((spec(q["colour"], q["shape"], q["motion"], q["bg"], wh, i, frames=LENGTHS[i % 2]),
                      q["colour"], q["motion"][6:]))
    extra = [("red", "circle", "grows", "blue", "growing"), ("yellow", "star", "shrinks", "black", "shrinking"),
             ("cyan", "square", "stays still", "brown", "still"), ("pink", "diamond", "grows", "green", "growing"),
             ("white", "triangle", "shrinks", "purple", "shrinking"), ("orange", "star", "stays still", "gray", "still")]
    for i, (c, s, m, bg, d) in enumerate(extra):
        clips.append((spec(c, s, m, bg, SIZES[i % len(SIZES)], 100 + i, size="large", frames=LENGTHS[i % 2]),
                      c, d))
    for sp, c, d in clips:
        v = gen.render(sp)
        out.write(("%d %d %d %s %s\n" % (sp["w"], sp["h"], sp["frames"], c, d.replace(" ", "_"))).encode())
        out.write(v.tobytes())
    out.close()


if __name__ == "__main__":
    main()
