"""Writes examples/text/topics.csv: short sentences about four topics, for the text example and tests.

Synthetic, from templates and word lists below, with a fixed seed; the CSV is committed, and this
script is how it was made (`python examples/text/make_dataset.py`). Each topic has two halves of
its word list: rows carry the half in `vocab_half` (a or b), so a test can train on one half and
evaluate on sentences whose topic words it never saw, which is where a pretrained encoder's
knowledge shows. Subjects, verbs and templates are shared by all topics. A few rows hold non-ASCII text.
"""

import csv
import os
import random

TOPICS = {
    "sports": {
        "a": ["football", "basketball", "tennis", "the marathon", "the goalkeeper", "the referee", "the striker",
              "the championship", "the league table", "the coach", "the penalty kick", "the stadium"],
        "b": ["hockey", "volleyball", "the sprinter", "the boxing match", "the relay race", "the quarterback",
              "the cycling tour", "the swimmer", "the playoffs", "the tournament final", "the rugby team",
              "the Olympic team"],
    },
    "food": {
        "a": ["the pasta", "the soup", "fresh bread", "the chocolate cake", "the salad", "the pizza", "the recipe",
              "the chef", "the bakery", "the curry", "the café crème", "roasted vegetables"],
        "b": ["the sushi", "the omelette", "the dumplings", "the barbecue", "the pancakes", "the stew",
              "the jalapeño salsa", "the cheese platter", "the noodles", "the dessert", "the sandwich", "the pie"],
    },
    "weather": {
        "a": ["the rain", "the storm", "the snow", "the sunshine", "the wind", "the forecast", "the fog", "the heatwave",
              "the thunder", "the clouds", "the humidity", "the frost"],
        "b": ["the hurricane", "the drizzle", "the blizzard", "the hail", "the tornado", "the monsoon", "the drought",
              "the temperature", "the lightning", "the breeze", "the sleet", "the rainbow"],
    },
    "technology": {
        "a": ["the laptop", "the software update", "the smartphone", "the database", "the compiler", "the network",
              "the processor", "the website", "the algorithm", "the server", "the battery", "the keyboard"],
        "b": ["the robot", "the tablet", "the operating system", "the cloud platform", "the graphics card",
              "the router", "the app", "the microchip", "the programming language", "the encryption",
              "the browser", "the neural network"],
    },
}
TEMPLATES = [
    "{Subj} {verb} {obj} yesterday.",
    "Everyone talked about how {subj} {verb} {obj}.",
    "I think {subj} {verb} {obj} again.",
    "News: {subj} {verb} {obj} this morning!",
    "Did you hear that {subj} {verb} {obj}?",
    "{Subj} {verb} {obj} in Zürich last week.",
    "Apparently {subj} {verb} {obj} twice.",
    "My friends said {subj} {verb} {obj}.",
]
# Verbs say nothing about the topic: only the topic words do.
VERBS = ["liked", "mentioned", "talked about", "complained about", "loved", "remembered", "wrote about",
         "asked about"]
SUBJECTS = ["my neighbour", "the team", "our family", "a reporter", "the students", "she", "he", "they"]
ROWS_PER_HALF = 40


def rows(seed: int = 7):
    rng = random.Random(seed)
    out = []
    for topic, words in TOPICS.items():
        for half in ("a", "b"):
            seen = set()
            while len(seen) < ROWS_PER_HALF:
                subj = rng.choice(SUBJECTS)
                obj = rng.choice(words[half])
                text = rng.choice(TEMPLATES).format(subj=subj, Subj=subj[0].upper() + subj[1:],
                                                    verb=rng.choice(VERBS), obj=obj)
                seen.add(text)
            out += [{"text": t, "topic": topic, "vocab_half": half} for t in sorted(seen)]
    rng.shuffle(out)
    return out


def main(path: str = os.path.join(os.path.dirname(__file__), "topics.csv")) -> None:
    data = rows()
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "topic", "vocab_half"])
        writer.writeheader()
        writer.writerows(data)
    print(f"wrote {path}: {len(data)} rows")


if __name__ == "__main__":
    main()
