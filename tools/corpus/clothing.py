"""Clothing emphasis: which corpus items show a Fashion-MNIST kind of thing,
and the synonym captions they get.

The table is curated by hand (documented in docs/corpus.md). An item is
classified from its own name or caption text (emoji short name, Tux Paint
sentence, clip-art title or file name): the longest trigger phrase found as
whole words wins, so "t-shirt" beats "shirt" and "running shoe" beats "shoe".
Phrases in EXCLUDE veto a match ("coat of arms", "money bag"). CLDR keywords
are not used to classify (the t-shirt emoji lists "shirt", the coat lists
"jacket"), only as captions.

A classified item gets: its class's synonym captions on the original image,
and extra images of the same item in the Fashion-MNIST look (grey, inverted,
object bright on black), mirrored, and as a flat silhouette, with the same
captions. Shoes that match no class (high heel, flat shoe) get SHOE captions
only.
"""
import re

# Fashion-MNIST label order.
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

TRIGGERS = {
    "T-shirt/top": ["t-shirt", "t shirt", "tshirt", "tee shirt", "tank top", "crop top",
                    "woman's clothes", "womans clothes", "blouse"],
    "Trouser": ["jeans", "blue jeans", "trousers", "pants", "bell bottoms", "bellbottoms",
                "slacks", "pair of trousers"],
    "Pullover": ["pullover", "sweater", "jumper", "sweatshirt", "hoodie", "cardigan"],
    "Dress": ["dress", "gown", "kimono", "sari", "sundress"],
    "Coat": ["coat", "jacket", "lab coat", "overcoat", "raincoat", "parka", "anorak"],
    "Sandal": ["sandal", "sandals", "thong sandal", "flip-flop", "flip-flops", "flip flop",
               "flip flops", "thongs"],
    "Shirt": ["shirt", "dress shirt", "polo shirt", "poloshirt", "necktie", "camicia"],
    "Sneaker": ["sneaker", "sneakers", "running shoe", "running shoes", "tennis shoe",
                "tennis shoes", "athletic shoe", "trainer shoe", "trainers"],
    "Bag": ["bag", "bags", "handbag", "purse", "clutch bag", "backpack", "rucksack",
            "satchel", "tote", "shopping bags", "shopping bag", "briefcase"],
    "Ankle boot": ["boot", "boots", "ankle boot", "hiking boot", "woman's boot",
                   "womans boot", "hikingboot"],
}

# A class's own wording first: CLIP-style prompts use these names.
SYNONYMS = {
    "T-shirt/top": ["a t-shirt", "a top", "a shirt", "a tee", "a t-shirt or top"],
    "Trouser": ["trousers", "a pair of trousers", "jeans", "pants"],
    "Pullover": ["a pullover", "a sweater", "a jumper"],
    "Dress": ["a dress", "a gown", "a frock"],
    "Coat": ["a coat", "a jacket", "an overcoat"],
    "Sandal": ["a sandal", "sandals", "a flip-flop"],
    "Shirt": ["a shirt", "a button-up shirt", "a collared shirt"],
    "Sneaker": ["a sneaker", "a running shoe", "a trainer", "an athletic shoe"],
    "Bag": ["a bag", "a handbag", "a purse"],
    "Ankle boot": ["an ankle boot", "a boot", "a short boot"],
}

SHOE_TRIGGERS = ["shoe", "shoes", "high heel", "high-heeled shoe", "highheel", "flat shoe",
                 "ballet shoes", "man's shoe", "mans shoe"]
SHOE_SYNONYMS = ["a shoe", "footwear"]

EXCLUDE = ["coat of arms", "money bag", "tea bag", "sleeping bag", "punching bag",
           "bean bag", "sand bag", "sandbag", "air bag", "bag of", "boot camp",
           "top hat", "tophat", "spinning top", "top of", "hilltop", "desktop", "laptop",
           "horseshoe", "horse shoe", "car boot", "dressing", "shirt button",
           "coat hanger", "coathanger", "clotheshanger", "clothes hanger", "mountain top",
           "cd jacket", "shoe print", "footprint"]

_WORD = re.compile(r"[a-z0-9'\-]+")


def _norm(text):
    t = text.lower().replace("\u2019", "'").replace("_", " ")
    return " " + " ".join(_WORD.findall(t)) + " "


def _has(norm, phrase):
    return (" " + phrase + " ") in norm


def classify(*texts):
    """Fashion-MNIST class name, "shoe" for other footwear, or None."""
    norm = "".join(_norm(t) for t in texts if t)
    if any(_has(norm, x) for x in EXCLUDE):
        return None
    best, best_len = None, 0
    for cls, phrases in TRIGGERS.items():
        for p in phrases:
            if len(p) > best_len and _has(norm, p):
                best, best_len = cls, len(p)
    if best is None and any(_has(norm, p) for p in SHOE_TRIGGERS):
        return "shoe"
    return best


def extra_captions(cls):
    if cls is None:
        return []
    if cls == "shoe":
        return list(SHOE_SYNONYMS)
    syn = SYNONYMS[cls]
    return syn + ["a photo of %s" % syn[0], "a black and white picture of %s" % syn[0]]
