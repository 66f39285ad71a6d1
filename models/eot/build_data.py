"""Write the end-of-turn data (data/v1/train.jsonl and data/v1/heldout.jsonl) from the lists below.

Every sentence here was written by hand for this project (see DATA.md). A `|` marks a place where a
speaker could stop mid-thought: the text before it is an incomplete example, the whole sentence
(without the marks) a complete one. The HARD lists are written whole: complete utterances that end
in a preposition-like word, and incomplete ones that read as if they were complete.

    python models/eot/build_data.py        # rewrites both splits (deterministic, no randomness)
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent / "data" / "v1"

TRAIN_SENTENCES = [
    "what's the | weather | tomorrow", "what is the weather like in | paris", "book a table for | two",
    "i'd like to book a flight to | boston", "what is the | capital of | france",
    "can you tell me about the | roman empire", "set a timer for | ten minutes", "remind me to | call my | mom",
    "play some | music by | the beatles", "turn off the | kitchen | lights", "how do i | make | pancakes",
    "what time does the | pharmacy | close", "how far is it from | london to | manchester",
    "add milk and | eggs to my | shopping list", "call | my | sister", "what's the | score of the | game",
    "tell me a joke about | cats", "how many | ounces are in a | pound", "send a message to | john saying | i'm late",
    "what's on my | calendar | today", "find a | cheap | hotel near the | airport", "who wrote | pride and prejudice",
    "translate | good morning | into spanish", "what does | ephemeral | mean", "how old is the | eiffel tower",
    "wake me up at | six thirty", "set the thermostat to | seventy | degrees", "what's | two plus | two",
    "i want to | order a | pizza", "can you | recommend a | good | book", "how do you | spell | necessary",
    "i need a | taxi to the | station", "what movies are playing | tonight", "is it going to | rain | this weekend",
    "how long should i | boil an | egg", "give me a | recipe for | banana bread", "what's the | exchange rate for | euros",
    "when is | the next | train to | leeds", "turn the | volume | up", "read me the | news", "how tall is | mount everest",
    "what is the | population of | japan", "schedule a meeting with | sarah at | three",
    "cancel my | appointment | tomorrow", "i'm looking for a | vegetarian | restaurant", "what is | photosynthesis",
    "how do i | get to the | museum", "open the | garage | door", "lock the | front | door",
    "what's the | difference between a | crocodile and an | alligator", "convert | fifty | miles to | kilometers",
    "how much | is a | ticket to | rome", "who is the | president of | brazil", "what's my | next | meeting",
    "could you | explain how | vaccines | work", "i'd like to | change my | password",
    "find me a | flight from | chicago to | denver on | friday", "what should i | cook for | dinner",
    "tell me | something | interesting", "how is the | traffic on the | way to | work",
    "what are the | opening hours of the | library", "text | mike that i'll be | there soon",
    "play the | next | song", "pause the | music", "what's the | temperature | outside",
    "how many | calories are in an | apple", "when did | world war two | end", "why is the | sky | blue",
    "what's a | good name for a | dog", "do i need an | umbrella | today", "start a | workout", "show me | photos from | last summer",
    "i'm | feeling a bit | tired", "can you help me | write an | email to my | boss", "what's the | best way to | learn | guitar",
    "how do i | reset my | router", "who won the | match | last night", "where is the | nearest | gas station",
    "i want to | listen to | jazz", "how much | sleep does a | baby need", "what is the | square root of | eighty one",
    "order more | coffee | pods", "check my | bank | balance", "is the | post office | open on | sunday",
    "what's | the | plural of | mouse", "set an alarm for | seven | tomorrow | morning", "dim the | bedroom | lights",
    "what rhymes with | orange", "how do | planes | stay | in the air", "i'd like to | return these | shoes",
    "tell me the | lyrics of | yesterday", "is there a | pharmacy | open | now", "how many | days until | christmas",
    "what is the | speed of | light", "who invented the | telephone", "where can i | buy | stamps",
    "make a | note that | the car needs | washing", "how do i | say thank you in | japanese",
    "what's the | forecast for the | weekend", "find | italian restaurants | nearby", "what's the | meaning of | life",
    "can you | repeat | that", "um what's the | weather | today", "so i was thinking we could | go | hiking",
    "uh set a | reminder for | the dentist", "okay and then | turn off | the | tv", "hey can you | find my | phone",
]

TRAIN_HARD_COMPLETE = [
    "what are you up to", "turn the lights on", "where are you from", "what is this for", "log me in",
    "who are you talking to", "turn it off", "pick me up", "what's it about", "which one should i go with",
    "what are you looking at", "sign me up", "count me in", "what's going on", "hold on",
    "what's that made of", "shut it down", "who is it for", "what did you say that for", "switch the fan on",
    "thank you", "yes", "no", "stop", "never mind", "that's all", "okay", "thanks a lot", "good night", "cheers",
    "what is the weather", "play music", "call mom", "what time is it", "help",
]

TRAIN_HARD_INCOMPLETE = [
    "i need to know if", "call my mom and", "i was wondering", "so basically", "i think that",
    "what i really want is", "can you also", "and then", "the thing is", "let me think",
    "i want to go", "play something by", "my name is", "it's for", "i'd like", "set a timer for like",
    "how about", "actually wait", "tell me more about", "what if", "i'm trying to", "because",
    "but what about", "is it true that", "do you know whether", "and also the", "um so", "find me a",
]

HELDOUT_SENTENCES = [
    "what's the | forecast for | monday", "reserve a table for | four at | eight", "i'd like to fly to | madrid | next week",
    "what is the | tallest | building in the | world", "tell me about the | history of | chess",
    "set a | timer for | twenty | minutes", "remind me to | water the | plants", "play | songs by | adele",
    "switch off the | living room | lamp", "how do i | bake | bread", "when does the | supermarket | open",
    "how far is | the moon", "put | bananas on the | grocery list", "ring | my | brother", "what's the | result of the | race",
    "tell me a | story about | dragons", "how many | grams in a | kilo", "message | anna that | dinner is | ready",
    "what do i have | planned for | tomorrow", "find a | quiet | cafe | nearby", "who painted the | mona lisa",
    "how do you say | cheers in | german", "what does | ubiquitous | mean", "how old is | the | queen",
    "wake me at | five", "make it | warmer in | here", "what's | nine | times | seven", "i want to | buy | new | headphones",
    "suggest a | film for | tonight", "how is | rhythm | spelled", "get me a | ride to the | airport",
    "will it | snow | tomorrow", "how long do i | cook | rice", "how do i | make a | smoothie", "what's the | price of | gold",
    "next train to | glasgow", "make it | louder", "what are the | headlines", "how deep is the | pacific ocean",
    "how many people live in | canada", "book a call with | david on | tuesday", "move my | dentist appointment | to friday",
    "i'm hungry for | thai | food", "what is | gravity", "directions to the | zoo", "close the | blinds",
    "compare | tea and | coffee", "turn | ten pounds into | dollars", "what's my | schedule | this afternoon",
    "can you | describe how | rainbows | form", "i need to | update my | address", "what should i | wear | today",
    "skip this | track", "stop the | podcast", "how | humid is it | today", "how much | protein is in an | egg",
    "when was the | first | moon landing", "why do | cats | purr", "is it | windy | outside",
    "begin a | meditation", "show me | pictures of | my dog", "can you | draft a | note for my | landlord",
    "how do i | fix a | flat tire", "who scored the | winning | goal", "where's the | closest | atm",
    "i'd love to | hear some | classical music", "how many | legs does a | spider have", "order | more | paper towels",
    "what's the | balance on my | credit card", "is the | gym | open | late", "what's | a | synonym for | happy",
    "wake me up | at nine | on saturday", "um can you | turn the | heating | down", "so what's the | best | laptop",
    "uh how do i | get | home", "okay | read my | messages", "hey what's the | date", "well i was hoping to | visit | my aunt",
]

HELDOUT_HARD_COMPLETE = [
    "what are you thinking of", "switch the heater on", "where is that from", "what's this button for", "let me in",
    "who am i speaking to", "shut the music off", "drop me off", "what is the film about", "what did you do that for",
    "fill me in", "what are we waiting for", "bring it on", "clean it up", "what's up",
    "no thanks", "sure", "great", "goodbye", "pause", "that's it", "what is the date", "play jazz", "text dad", "go on",
]

HELDOUT_HARD_INCOMPLETE = [
    "i wanted to ask if", "text my dad and", "i've been thinking", "so anyway", "i guess that",
    "what i'm looking for is", "could you maybe", "and after that", "the problem is", "hang on let me",
    "i'd like to go", "put on something from", "my address is", "it's about", "i'd love", "remind me in about",
    "what about", "oh and", "can you explain more about", "suppose that", "i'm hoping to", "since",
    "and what about the", "is it possible that", "do you happen to know if",
]


def split_rows(sentences: list[str], complete: list[str], incomplete: list[str]) -> list[dict]:
    rows = []
    for sentence in sentences:
        pieces = [piece.strip() for piece in sentence.split("|")]
        for cut in range(1, len(pieces)):
            rows.append({"text": " ".join(pieces[:cut]), "complete": False})
        rows.append({"text": " ".join(pieces), "complete": True})
    rows += [{"text": text, "complete": True} for text in complete]
    rows += [{"text": text, "complete": False} for text in incomplete]
    return _dedupe(rows)


def _dedupe(rows: list[dict]) -> list[dict]:
    """Drop repeated texts; a text labelled both ways keeps its complete label (a full sentence wins)."""
    by_text: dict[str, dict] = {}
    for row in rows:
        if row["text"] not in by_text or row["complete"]:
            by_text[row["text"]] = row
    return sorted(by_text.values(), key=lambda row: row["text"])


def main() -> None:
    train = split_rows(TRAIN_SENTENCES, TRAIN_HARD_COMPLETE, TRAIN_HARD_INCOMPLETE)
    seen = {row["text"] for row in train}
    heldout = [row for row in split_rows(HELDOUT_SENTENCES, HELDOUT_HARD_COMPLETE, HELDOUT_HARD_INCOMPLETE)
               if row["text"] not in seen]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("heldout", heldout)):
        with (OUT / f"{name}.jsonl").open("w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        complete = sum(row["complete"] for row in rows)
        print(f"{name}: {len(rows)} rows ({complete} complete, {len(rows) - complete} incomplete)")


if __name__ == "__main__":
    main()
