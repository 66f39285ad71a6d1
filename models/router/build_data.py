"""Write the router's training split (data/v1/train.jsonl) from the phrase lists below.

Every phrase and slot filler here was written by hand for this project (see DATA.md).
The training split is these templates expanded with a fixed seed; the held-out split
(data/v1/heldout.jsonl) is written separately, by hand, and is never produced or read here.

    python models/router/build_data.py        # rewrites data/v1/train.jsonl
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SEED = 20261122
OUT = Path(__file__).parent / "data" / "v1" / "train.jsonl"

LEADS = ["", "", "", "hey ", "um ", "okay ", "so ", "hey there ", "uh ", "alright "]
TAILS = ["", "", "", " please", " for me", " now"]

INSTANT = [
    "what time is it", "what's the time", "whats the time", "tell me the time", "time please",
    "do you know what time it is", "what time is it right now", "current time", "what's the time now",
    "what is today's date", "what's the date", "what date is it", "what day is it today", "what day is it",
    "what's today", "tell me the date", "which day of the week is it", "is it monday today",
    "hello", "hi", "hey", "hi there", "hello there", "good morning", "good afternoon", "good evening",
    "morning", "howdy", "yo", "hiya", "hey assistant", "hello are you there", "are you there",
    "thanks", "thank you", "thank you so much", "thanks a lot", "cheers", "thanks that's great",
    "perfect thanks", "great thank you", "that's helpful thanks", "much appreciated", "ok thanks",
    "bye", "goodbye", "bye bye", "see you later", "good night", "talk to you later", "that's all",
    "that's all for now", "i'm done", "we're done", "see ya", "catch you later", "have a good one",
    "stop", "cancel", "never mind", "nevermind", "be quiet", "shut up", "quiet", "stop talking",
    "that's enough", "hush", "cancel that", "forget it", "stop it", "enough", "silence", "pause",
    "say that again", "repeat that", "what did you say", "can you repeat that", "come again",
    "pardon", "sorry what", "say again", "one more time", "repeat please", "i didn't catch that",
    "sorry i missed that", "huh", "what was that",
    "louder", "speak louder", "turn it up", "volume up", "turn the volume up", "quieter",
    "turn it down", "volume down", "lower the volume", "speak slower", "slow down", "speak faster",
    "talk faster", "mute", "unmute", "speak up",
    "what can you do", "what can i ask you", "help", "what are you able to do",
    "how do i use you", "what do you do", "what are your features",
    "yes", "no", "yeah", "yep", "nope", "sure", "ok", "okay", "correct", "that's right",
    "no thanks", "yes please", "no that's wrong", "right", "absolutely", "not really", "of course",
]

SMALL_FREE = [
    "how are you", "how's it going", "how are you doing today", "what's up", "what's your name",
    "who are you", "are you a robot", "do you have feelings", "tell me a joke", "tell me a fun fact",
    "what's your favorite color", "do you like music", "i'm bored", "i'm tired today",
    "i had a rough day", "i'm feeling happy", "what should i eat for lunch", "say something nice",
    "give me a compliment", "what's a good name for a cat", "recommend a movie",
    "recommend a good book", "what's a good song to listen to", "how's the weather usually in june",
    "is it going to rain", "what's the weather like", "what's the weather tomorrow",
    "what rhymes with orange", "how do you spell necessary", "spell the word rhythm",
    "what does ubiquitous mean", "define serendipity", "what's another word for happy",
    "what's the opposite of generous", "translate hello into spanish", "how do you say thank you in french",
    "is a tomato a fruit", "are dolphins mammals", "do penguins fly", "is the sun a star",
    "what color is a flamingo", "how many legs does a spider have", "how many days are in a leap year",
    "how many minutes in an hour", "what's two plus two", "what is ten times twelve",
    "what's fifteen percent of eighty", "what's the square root of sixty four", "convert ten miles to kilometers",
    "how many ounces in a pound", "how many cups in a quart", "set a timer for ten minutes",
    "remind me to call mom at five", "add milk to my shopping list", "what's on my shopping list",
    "play some jazz", "play relaxing music", "what time does the sun set", "when is sunrise tomorrow",
    "what year did world war two end", "when did the titanic sink", "who was the first man on the moon",
    "who invented the telephone", "who painted the mona lisa", "what's the tallest mountain",
    "what's the longest river in the world", "what's the biggest ocean", "what's the smallest planet",
    "how far is the moon", "how hot is the sun", "how old is the earth", "what do pandas eat",
    "where do kangaroos live", "what's a baby goat called", "why is the sky blue",
    "i love pizza", "my favorite food is sushi", "do you like dogs or cats", "what's your favorite movie",
    "are you smart", "can you sing", "do you dream", "where are you from", "how old are you",
    "sing me a song", "tell me something interesting", "give me a riddle", "flip a coin", "roll a die",
    "pick a number between one and ten", "what should i name my dog", "good idea or bad idea",
    "i just got a new puppy", "my sister is visiting this weekend", "i passed my exam",
]

SMALL_SLOTS = {
    "what's the capital of {}": ["france", "japan", "kenya", "canada", "peru", "norway", "egypt",
                                "australia", "brazil", "india", "germany", "chile"],
    "who wrote {}": ["hamlet", "pride and prejudice", "the hobbit", "moby dick", "war and peace",
                     "the odyssey", "frankenstein", "dracula"],
    "how tall is {}": ["the eiffel tower", "mount everest", "a giraffe", "the statue of liberty",
                       "an elephant", "the empire state building"],
    "what is a {}": ["platypus", "comet", "haiku", "sonnet", "volcano", "glacier", "tsunami", "sloth",
                     "quokka", "nebula", "cello", "kiwi"],
    "who is {}": ["taylor swift", "albert einstein", "serena williams", "shakespeare", "marie curie",
                  "lionel messi", "frida kahlo"],
    "how do you pronounce {}": ["quinoa", "worcestershire", "gnocchi", "croissant", "pho"],
    "what's the population of {}": ["tokyo", "london", "mexico city", "lagos", "sydney"],
    "is {} open today": ["the post office", "the bank", "the library", "the pharmacy"],
}

LARGE_FREE = [
    "explain how a car engine works in detail", "walk me through how vaccines train the immune system",
    "can you explain quantum entanglement like i'm a college student",
    "help me plan a three day trip to rome with a budget", "plan my week so i can study and still work out",
    "write a python function that reverses a linked list", "write a bash script that backs up my photos",
    "how do i fix a null pointer exception in java", "debug this code for me it keeps crashing",
    "write me a sql query that finds duplicate emails", "explain the difference between tcp and udp",
    "compare renting versus buying a house and give me the pros and cons",
    "if a train leaves at three going sixty miles an hour and another leaves at four going eighty when does the second catch up",
    "i have twelve apples and give a third to my friend and half the rest to my sister how many are left",
    "a shirt costs forty dollars after a twenty percent discount what was the original price",
    "help me write a cover letter for a software engineering job",
    "write a short story about a dragon who is afraid of fire",
    "summarize the causes of the first world war", "explain the causes and effects of the great depression",
    "what are the steps to start a small business", "how should i prepare for a job interview step by step",
    "give me a detailed workout plan for building muscle", "create a meal plan for the week that's vegetarian",
    "explain how neural networks learn", "how does the stock market actually work",
    "why did the roman empire fall explain the main theories",
    "can you help me understand how compound interest works with an example",
    "if i invest five hundred dollars a month at seven percent how much will i have in thirty years",
    "walk me through solving a quadratic equation", "prove that the square root of two is irrational",
    "what's the best way to learn a new language and how should i structure my practice",
    "help me decide between two job offers one pays more but the other has better growth",
    "design a database schema for a library system", "write a javascript function to debounce a callback",
    "explain recursion and give me an example in python", "how do i set up a web server with nginx and ssl",
    "outline an essay about climate change and its economic impact",
    "plan a birthday party for twenty kids with games and a timeline",
    "explain the theory of relativity in simple terms but with the math",
    "what would happen to the economy if interest rates doubled",
    "help me make a budget i earn four thousand a month and spend too much on food",
    "how do i negotiate a raise walk me through what to say",
    "teach me the basics of chess strategy", "explain how blockchain works and whether it's useful",
    "compare python and rust for building a web backend",
    "figure out how long it takes to drive four hundred miles at sixty five with two stops of twenty minutes",
    "three people paint a house in six hours how long would it take five people",
    "write a haiku sequence about the four seasons and explain the imagery",
    "help me think through whether i should move to another city",
    "explain photosynthesis step by step including the light and dark reactions",
    "what's the difference between a virus and a bacteria and how do antibiotics work",
    "give me a study schedule for my exams in three weeks",
    "refactor this function to be more readable", "how do i write unit tests for an async function",
    "explain big o notation with examples", "convert this recipe for four people into one for eleven and adjust the cooking time",
    "help me plan a road trip from chicago to denver with stops",
    "walk me through changing a flat tire", "how do i train for a marathon in four months",
    "explain the pros and cons of nuclear power", "why do we have seasons explain with the earth's tilt",
]

LARGE_SLOTS = {
    "explain in detail how {} works": ["the internet", "a refrigerator", "gps", "the human heart",
                                       "a nuclear reactor", "wifi", "an electric motor", "encryption",
                                       "the immune system", "a jet engine", "inflation", "a compiler"],
    "write a {} program that {}": None,  # filled below from pairs
    "help me plan {}": ["a week long vacation in japan", "a wedding on a small budget",
                        "my move to a new apartment", "a study plan for learning calculus",
                        "a garden for next spring", "a product launch for my startup",
                        "a dinner party for eight people"],
    "what are the pros and cons of {}": ["remote work", "electric cars", "homeschooling",
                                         "social media for kids", "solar panels", "living abroad"],
    "walk me through {} step by step": ["filing my taxes", "building a website", "baking sourdough bread",
                                        "setting up a home network", "training a puppy", "writing a resume"],
}

CODE_LANGS = ["python", "javascript", "c", "go", "rust", "java"]
CODE_TASKS = ["sorts a list of names", "checks if a number is prime", "reads a csv file and sums a column",
              "finds the longest word in a sentence", "counts words in a file", "parses a date string"]


def _expand_slots(slots: dict, rng: random.Random) -> list[str]:
    phrases = []
    for template, fillers in slots.items():
        if fillers is None:
            for lang in CODE_LANGS:
                for task in rng.sample(CODE_TASKS, 3):
                    phrases.append(template.format(lang, task))
            continue
        phrases.extend(template.format(filler) for filler in fillers)
    return phrases


def _speak(text: str, rng: random.Random) -> str:
    """Dress a phrase the way ASR hands it over: a filler lead, a tail, now and then punctuation."""
    text = f"{rng.choice(LEADS)}{text}{rng.choice(TAILS)}".strip()
    if rng.random() < 0.2:
        text = text[0].upper() + text[1:] + ("?" if rng.random() < 0.5 else ".")
    return re.sub(r"\s+", " ", text)


def build() -> list[dict]:
    rng = random.Random(SEED)
    pools = {
        "instant": INSTANT,
        "small": SMALL_FREE + _expand_slots(SMALL_SLOTS, rng),
        "large": LARGE_FREE + _expand_slots(LARGE_SLOTS, rng),
    }
    rows = []
    for route, phrases in pools.items():
        for phrase in phrases:
            rows.append({"text": phrase, "route": route})
            rows.append({"text": _speak(phrase, rng), "route": route})
    unique = {(row["text"], row["route"]): row for row in rows}
    rows = sorted(unique.values(), key=lambda row: (row["route"], row["text"]))
    rng.shuffle(rows)
    return rows


def main() -> None:
    rows = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
