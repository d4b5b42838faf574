"""Writes train.jsonl (120) and heldout.jsonl (40): English present-tense sentences -> the past tense.

Every word list below was written by hand for this recipe; a seeded draw combines them into 160 distinct
sentences (python make_data.py, from this folder, reproduces the files exactly).
"""

import json
import random
from pathlib import Path

SUBJECTS = ["The farmer", "My neighbour", "The teacher", "Anna", "Tom", "The young doctor", "My uncle",
            "The pilot", "Lucy", "The baker", "Grandma", "The student"]
VERBS = [  # present (third person), past, complements
    ("walks", "walked", ["to the station", "along the river", "home after work"]),
    ("eats", "ate", ["a green apple", "soup for lunch", "toast in the morning"]),
    ("writes", "wrote", ["a long letter", "a short poem", "notes in class"]),
    ("drinks", "drank", ["cold water", "hot tea", "a glass of milk"]),
    ("reads", "read", ["the morning paper", "a thick novel", "the menu twice"]),
    ("sings", "sang", ["an old song", "in the choir", "softly to the baby"]),
    ("buys", "bought", ["fresh bread", "a red bicycle", "two tickets"]),
    ("sees", "saw", ["a bright star", "the tall mountain", "an old friend"]),
    ("takes", "took", ["the early bus", "a quick photo", "the dog outside"]),
    ("makes", "made", ["a paper boat", "pancakes", "a loud noise"]),
    ("runs", "ran", ["in the park", "to the shop", "every morning"]),
    ("swims", "swam", ["in the lake", "across the pool", "with a friend"]),
    ("finds", "found", ["a lost key", "a small coin", "the right answer"]),
    ("brings", "brought", ["a cake", "warm blankets", "good news"]),
    ("teaches", "taught", ["math at the school", "the children to read", "a cooking class"]),
    ("builds", "built", ["a wooden shed", "a sand castle", "a small robot"]),
    ("catches", "caught", ["the last train", "a big fish", "a cold"]),
    ("drives", "drove", ["to the city", "a blue truck", "very slowly"]),
    ("sleeps", "slept", ["on the sofa", "until noon", "in a tent"]),
    ("paints", "painted", ["the kitchen wall", "a sunset", "the old fence"]),
    ("plays", "played", ["the piano", "football with friends", "chess on Sunday"]),
    ("cleans", "cleaned", ["the windows", "the whole house", "the dusty boots"]),
    ("opens", "opened", ["the door", "a new shop", "the box carefully"]),
    ("watches", "watched", ["a funny film", "the birds", "the rain fall"]),
    ("carries", "carried", ["a heavy bag", "the baby upstairs", "water from the well"]),
    ("studies", "studied", ["history", "for the exam", "late at night"]),
    ("throws", "threw", ["the ball", "a stone into the pond", "old papers away"]),
    ("speaks", "spoke", ["three languages", "at the meeting", "quietly"]),
    ("forgets", "forgot", ["the umbrella", "the password", "to call back"]),
    ("grows", "grew", ["tomatoes", "tall sunflowers", "fresh herbs"]),
    ("leaves", "left", ["the office early", "a note on the table", "the lights on"]),
    ("feeds", "fed", ["the cat", "the ducks at the pond", "the hungry goats"]),
    ("wins", "won", ["the race", "a prize", "the final game"]),
    ("sells", "sold", ["old books", "fresh fish", "the car"]),
    ("draws", "drew", ["a map", "a funny face", "the curtains"]),
]
PROMPT = "Rewrite this sentence in the past tense: {}"


def main() -> None:
    rng = random.Random(2026)
    combos = [(s, v, c) for s in SUBJECTS for v in VERBS for c in v[2]]
    picked = rng.sample(combos, 160)
    rows = [{"prompt": PROMPT.format(f"{s} {present} {c}."), "response": f"{s} {past} {c}."}
            for s, (present, past, _), c in picked]
    here = Path(__file__).parent
    for name, part in (("train.jsonl", rows[:120]), ("heldout.jsonl", rows[120:])):
        (here / name).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")


if __name__ == "__main__":
    main()
