"""Topic lexicons and text templates: titles and comments carry real English words, so a pretrained
text encoder can read the semantics the simulator's latent truth encodes."""
from __future__ import annotations

import numpy as np

TOPICS: dict[str, tuple[str, ...]] = {
    "food": ("ramen", "pizza", "recipe", "spicy", "noodles", "dumplings", "grill", "dessert", "chef",
             "breakfast", "street food", "sauce", "baking", "curry", "sushi", "taste test"),
    "football": ("goal", "striker", "penalty", "league", "derby", "keeper", "tackle", "free kick",
                 "champions", "transfer", "coach", "stadium", "offside", "hat-trick", "midfield", "final"),
    "cats": ("kitten", "cat", "purring", "whiskers", "meow", "litter", "paws", "tabby", "catnip",
             "nap", "scratching post", "fluffy", "tuxedo cat", "zoomies", "cat tower", "yarn"),
    "gaming": ("boss fight", "speedrun", "controller", "level", "respawn", "loot", "multiplayer",
               "headshot", "patch", "esports", "open world", "quest", "console", "glitch", "ranked", "mod"),
    "travel": ("beach", "mountain", "backpacking", "hostel", "flight", "island", "road trip", "temple",
               "sunset", "old town", "hiking trail", "passport", "market", "ferry", "village", "waterfall"),
    "music": ("guitar", "cover song", "drummer", "concert", "vocals", "piano", "chorus", "remix",
              "album", "live set", "bass line", "violin", "lyrics", "rapper", "orchestra", "karaoke"),
    "fitness": ("workout", "squat", "push-ups", "protein", "marathon", "gym", "stretching", "cardio",
                "deadlift", "yoga", "abs", "personal best", "sprint", "plank", "kettlebell", "recovery"),
    "tech": ("smartphone", "laptop", "unboxing", "battery", "camera test", "chip", "benchmark",
             "headphones", "keyboard", "update", "gadget", "screen", "charger", "robot", "software", "drone"),
    "comedy": ("prank", "sketch", "stand-up", "punchline", "parody", "blooper", "roast", "impression",
               "awkward", "sitcom", "improv", "meme", "joke", "skit", "satire", "funny fail"),
    "cars": ("engine", "drift", "supercar", "test drive", "horsepower", "garage", "race track",
             "electric car", "tyres", "exhaust", "restoration", "gearbox", "rally", "pickup truck", "turbo", "detailing"),
    "fashion": ("outfit", "sneakers", "streetwear", "makeup", "haul", "runway", "vintage", "jacket",
                "styling", "thrift", "dress", "accessories", "hairstyle", "skincare", "lookbook", "tailoring"),
    "science": ("experiment", "physics", "chemistry", "planet", "telescope", "dinosaur", "volcano",
                "microscope", "rocket", "biology", "black hole", "laboratory", "fossil", "climate", "magnet", "eclipse"),
    "dogs": ("puppy", "golden retriever", "fetch", "leash", "dog park", "bark", "husky", "tricks",
             "rescue dog", "walkies", "corgi", "tail wag", "treats", "agility", "dog training", "bulldog"),
    "diy": ("woodworking", "drill", "renovation", "paint", "shelf", "toolbox", "garden bed", "tiles",
            "upcycling", "workbench", "sanding", "furniture flip", "plumbing", "epoxy", "soldering", "planter"),
    "finance": ("budget", "savings", "stocks", "crypto", "investing", "side hustle", "interest rate",
                "rent", "retirement", "dividends", "credit card", "salary", "taxes", "index fund", "inflation", "frugal"),
    "animation": ("anime", "cartoon", "stop motion", "sketchbook", "character design", "manga", "pixel art",
                  "storyboard", "voice acting", "fan art", "3d render", "opening theme", "studio", "cel shading", "comic", "episode"),
}

TITLE_TEMPLATES = (
    "{a} and {b}: what happened next",
    "trying {a} for the first time",
    "the best {a} you will see today",
    "{a} vs {b}, who wins?",
    "why everyone loves {a}",
    "24 hours of {a}",
    "my {a} story (with {b})",
    "{a} tips nobody tells you",
    "rating {a} from 1 to 10",
    "this {a} changed everything",
    "{a} challenge gone wrong",
    "a quiet day of {a} and {b}",
)

# Comment styles: users differ in which they enjoy (the comment-style taste of the latent truth).
STYLES: dict[str, tuple[str, ...]] = {
    "humour": ("lol the {a} at the end", "i can't stop laughing at the {a}", "{a} really said no thanks",
               "not the {a} again haha", "whoever edited the {a} part deserves a raise", "this {a} is comedy gold"),
    "informative": ("fun fact: {a} goes well with {b}", "tip: try the {a} slower, it works better",
                    "for anyone asking, the {a} is from the second clip", "the trick with {a} is patience",
                    "source on the {a}? i read the same about {b}", "pro tip: check the {a} before the {b}"),
    "debate": ("honestly the {a} is overrated", "unpopular opinion: {b} beats {a}",
               "i disagree, the {a} was clearly better", "nobody talks about how bad the {a} is",
               "the {a} debate again? {b} wins", "change my mind: {a} is not worth it"),
    "emotional": ("this {a} made my whole day", "i teared up at the {a}", "the {a} brings back memories",
                  "so wholesome, love the {a}", "watching the {a} after a long day hits different",
                  "my heart, that {a}"),
    "question": ("where can i find that {a}?", "how did you do the {a}?", "is the {a} worth it?",
                 "what song is playing during the {a}?", "does the {a} work with {b}?",
                 "anyone else notice the {a}?"),
}

STYLE_NAMES = tuple(STYLES)
TOPIC_NAMES = tuple(TOPICS)


def _two_words(rng: np.random.Generator, words: tuple[str, ...]) -> tuple[str, str]:
    i, j = rng.choice(len(words), size=2, replace=False)
    return words[i], words[j]


def make_title(rng: np.random.Generator, topics: list[int]) -> str:
    """A title from a template and words of the video's topic(s)."""
    main = TOPICS[TOPIC_NAMES[topics[0]]]
    a, b = _two_words(rng, main)
    if len(topics) > 1:
        b = TOPICS[TOPIC_NAMES[topics[1]]][rng.integers(len(TOPICS[TOPIC_NAMES[topics[1]]]))]
    return TITLE_TEMPLATES[rng.integers(len(TITLE_TEMPLATES))].format(a=a, b=b)


def make_comment(rng: np.random.Generator, topic: int, style: int) -> str:
    """A comment in one style about words of one topic."""
    a, b = _two_words(rng, TOPICS[TOPIC_NAMES[topic]])
    templates = STYLES[STYLE_NAMES[style]]
    return templates[rng.integers(len(templates))].format(a=a, b=b)


def worded(rng: np.random.Generator | None, fidelity: float, truth: np.ndarray, n: int) -> np.ndarray:
    """The topic or style ids a text is worded in: ``truth`` where a draw from ``rng`` falls under
    ``fidelity``, else uniform over ``n`` (which can hit the truth). No draw at fidelity 1, so the
    calibrated world's streams are untouched."""
    truth = np.asarray(truth, np.int64)
    if fidelity >= 1.0:
        return truth
    keep = rng.random(truth.shape) < fidelity
    return np.where(keep, truth, rng.integers(0, n, size=truth.shape))
