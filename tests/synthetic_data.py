"""A small data root the tests make: news-like texts in every layout main.py reads, written here, no real data.

    write_data_root(folder)   # ag_news/ conll2003/ stsbenchmark/ bbc_sport_politics/ under folder, as the real root

The texts come from templates filled with well-known names, so spaCy's small English pipeline finds real entities
(PERSON, ORG, GPE, ...) in them, and each topic has its own vocabulary, so a tiny model can learn it. Layouts match
the development data's (../shared/data/README.md) so the same code reads both:
- ag_news/{train,test}.parquet: `text` (title + " " + description, with AG News's escapes such as #36; and quot;)
  and `label` (ClassLabel World / Sports / Business / Sci/Tech);
- conll2003/{train,valid}.txt: CoNLL-2003's four columns (word POS chunk NER), IOB2, -DOCSTART- between documents;
- stsbenchmark/sts-dev.csv: tab-separated genre, file, years, id, score, sentence 1, sentence 2 (no header);
- bbc_sport_politics/bbc-text.csv: `category,text` with Sports / Politics, lower-cased texts of 60 to 400 words
  (most longer than a 128-wordpiece window).
Sizes are small and not the development copy's (tests must not assume either); the same seed gives the same files.
"""
import csv
import random
from pathlib import Path

PEOPLE = ["Barack Obama", "Angela Merkel", "Tony Blair", "Vladimir Putin", "George Bush", "Kofi Annan",
          "Jacques Chirac", "Ariel Sharon", "John Kerry", "Hu Jintao", "Gordon Brown", "Condoleezza Rice"]
PLAYERS = ["Roger Federer", "Tiger Woods", "Michael Schumacher", "David Beckham", "Lance Armstrong", "Thierry Henry",
           "Serena Williams", "Wayne Rooney", "Andy Roddick", "Yao Ming", "Michael Phelps", "Shaquille O'Neal"]
BOSSES = ["Bill Gates", "Steve Jobs", "Warren Buffett", "Carly Fiorina", "Larry Page", "Alan Greenspan",
          "Michael Dell", "Rupert Murdoch", "Jeff Bezos", "Sergey Brin"]
PLACES = ["Iraq", "France", "Germany", "China", "Japan", "Russia", "Israel", "London", "Paris", "Moscow", "Beijing",
          "Baghdad", "Washington", "Tokyo", "Sudan", "Iran", "India", "Brazil", "Canada", "Spain"]
TEAMS = ["Manchester United", "Chelsea", "Arsenal", "Liverpool", "Real Madrid", "the New York Yankees",
         "the Boston Red Sox", "the Los Angeles Lakers", "Barcelona", "the Chicago Bulls"]
COMPANIES = ["Microsoft", "Google", "Apple", "IBM", "Intel", "Oracle", "Sony", "Nokia", "General Motors", "Boeing",
             "Wal-Mart", "Yahoo", "Citigroup", "Toyota", "Exxon Mobil", "Dell"]
AGENCIES = ["Reuters", "AP", "AFP"]

TOPICS = {
    "World": [
        ("{P} meets {P2} in {L} over {issue}",
         "{L} ({A}) {A} - {P} met {P2} in {L} on {day} to discuss {issue}, officials said."),
        ("Troops clash with rebels near {L}",
         "Troops clashed with rebels near {L} on {day}, and the United Nations called for talks on {issue}."),
        ("{L} votes in tense election",
         "Voters in {L} went to the polls on {day} as {P} warned of {issue} after weeks of protests."),
        ("{P} urges peace in {L}",
         "{P} urged leaders in {L} to end the violence, saying {issue} threatened the whole region."),
    ],
    "Sports": [
        ("{T} beat {T2} {s1}-{s2}",
         "{T} beat {T2} {s1}-{s2} on {day} as {S} scored twice before a crowd in {L}."),
        ("{S} wins the title",
         "{S} won the championship final on {day}, beating the defending champion in straight sets in {L}."),
        ("{S} injured before the match",
         "{S} will miss the match against {T} after an injury in training, the coach said on {day}."),
        ("Coach praises {S} after victory",
         "The coach of {T} praised {S} after the team's fifth straight win of the season in {L}."),
    ],
    "Business": [
        ("{C} profit rises {n} percent",
         "{C} said on {day} that quarterly profit rose {n} percent to #36;{m} million, beating analysts' forecasts."),
        ("{C} shares fall on weak sales",
         "Shares of {C} fell {n} percent on {day} after the company cut its sales outlook, {B} told investors."),
        ("Oil prices climb as {L} output slows",
         "Oil prices rose to #36;{n} a barrel on {day} as output in {L} slowed, lifting energy stocks on Wall Street."),
        ("{C} agrees to buy rival for #36;{m} million",
         "{C} agreed to buy a smaller rival for #36;{m} million in cash, {B} said, in a deal that lifts its market share."),
    ],
    "Sci/Tech": [
        ("{C} unveils new {gadget}",
         "{C} unveiled a new {gadget} on {day}, saying the software will let users search the Internet faster."),
        ("Scientists find {thing} with new telescope",
         "Scientists using a new telescope found {thing}, NASA researchers reported in the journal Nature on {day}."),
        ("{C} patches security flaw in {gadget}",
         "{C} released a patch for a security flaw in its {gadget} that let a virus spread through quot;e-mailquot; attachments."),
        ("{B} shows off {C}'s {gadget}",
         "{B} showed off the {gadget} of {C} at a technology conference in {L}, promising faster chips and wireless networks."),
    ],
}
FILL = {
    "issue": ["the nuclear talks", "the refugee crisis", "the border dispute", "the peace plan", "the oil embargo"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "gadget": ["search engine", "music player", "operating system", "mobile phone", "web browser", "laptop"],
    "thing": ["a distant planet", "water on Mars", "a new galaxy", "an ancient comet", "a giant black hole"],
}
LABELS = list(TOPICS)


def news_item(rng, label):
    """(title, description, entities) of one news-like text of `label`; entities: [(text, type)] in order."""
    title, body = rng.choice(TOPICS[label])
    values = {"P": rng.choice(PEOPLE), "P2": rng.choice(PEOPLE), "L": rng.choice(PLACES), "T": rng.choice(TEAMS),
              "T2": rng.choice(TEAMS), "S": rng.choice(PLAYERS), "C": rng.choice(COMPANIES), "B": rng.choice(BOSSES),
              "A": rng.choice(AGENCIES), "s1": rng.randint(1, 5), "s2": rng.randint(0, 1), "n": rng.randint(2, 40),
              "m": rng.randint(10, 900), **{k: rng.choice(v) for k, v in FILL.items()}}
    title, body = title.format(**values), body.format(**values)
    return title[0].upper() + title[1:], body[0].upper() + body[1:]


def news_texts(n, seed=0):
    """n (text, label index) pairs in AG News's form: title + " " + description, classes in turn then shuffled."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % len(LABELS)
        title, body = news_item(rng, LABELS[label])
        text = f"{title} {body}"
        if rng.random() < 0.1:
            text = text.replace(" - ", " \\\\ ", 1)  # AG News's stray backslashes
        rows.append((text, label))
    rng.shuffle(rows)
    return rows


def write_ag_news(folder, train_rows=600, test_rows=200, seed=0):
    """folder/train.parquet and test.parquet in the Hub's AG News schema; returns folder."""
    import datasets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=LABELS)})
    for split, n, s in (("train", train_rows, seed), ("test", test_rows, seed + 1)):
        rows = news_texts(n, s)
        ds = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [y for _, y in rows]},
                                        features=features)
        ds.to_parquet(str(folder / f"{split}.parquet"))
    return folder


CONLL_TYPES = {"P": "PER", "P2": "PER", "S": "PER", "B": "PER", "L": "LOC", "T": "ORG", "T2": "ORG", "C": "ORG"}
CONLL_SENTENCES = [
    "{P} met {P2} in {L} on Monday .",
    "{S} scored twice as {T} beat {T2} .",
    "{C} said profit rose in {L} , {B} told reporters .",
    "Shares of {C} fell 3 percent in early trading .",
    "The European Union said it would send aid to {L} .",
    "{S} won gold at the Olympic Games in {L} .",
    "{B} of {C} spoke at a conference in {L} .",
]


FIXED_TAGS = {"European": "B-ORG", "Union": "I-ORG", "Olympic": "B-MISC"}


def conll_sentences(n, seed=0):
    """n sentences as [(word, tag)] with IOB2 tags of PER / ORG / LOC / MISC."""
    rng = random.Random(seed)
    pools = {"P": PEOPLE, "P2": PEOPLE, "S": PLAYERS, "B": BOSSES, "L": PLACES, "T": TEAMS, "T2": TEAMS,
             "C": COMPANIES}
    out = []
    for _ in range(n):
        sentence = []
        for token in rng.choice(CONLL_SENTENCES).split():
            if token.startswith("{"):
                slot = token.strip("{}")
                words = rng.choice(pools[slot]).split()
                if words[0] == "the":
                    sentence.append(("the", "O"))
                    words = words[1:]
                kind = CONLL_TYPES[slot]
                sentence += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]
            else:
                sentence.append((token, FIXED_TAGS.get(token, "O")))
        out.append(sentence)
    return out


def write_conll(path, sentences, per_document=5):
    """A CoNLL-2003 file: -DOCSTART- before every per_document sentences, blank lines between sentences."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, sentence in enumerate(sentences):
        if i % per_document == 0:
            lines += ["-DOCSTART- -X- -X- O", ""]
        lines += [f"{w} NNP B-NP {t}" if t != "O" else f"{w} NN I-NP O" for w, t in sentence]
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_sts(path, pairs=120, seed=0):
    """An STS-B dev-like file: a news text and (score 5) itself reworded, (~2.5) another of its topic, (0) another
    topic's; tab-separated genre, file, years, id, score, sentence 1, sentence 2."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(pairs):
        label = LABELS[i % len(LABELS)]
        _, a = news_item(rng, label)
        kind = i % 3
        if kind == 0:
            b, score = a.replace(" on ", " last ", 1).replace(" said", " stated", 1), 4.8
        elif kind == 1:
            b, score = news_item(rng, label)[1], 2.4
        else:
            b, score = news_item(rng, LABELS[(i + 1) % len(LABELS)])[1], 0.2
        rows.append(["main-news", "2004", "2004", f"{i:04d}", f"{score + rng.uniform(-0.2, 0.2):.3f}", a, b])
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    return path


def write_bbc(path, rows=160, seed=0):
    """A user CSV like the BBC one: category,text; Sports / Politics, lower-cased, punctuation stripped, long."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(rows):
        category = "Sports" if i % 9 < 5 else "Politics"
        label = "Sports" if category == "Sports" else "World"
        words = []
        target = rng.randint(60, 400)
        while len(words) < target:
            words += news_item(rng, label)[1].lower().replace(",", "").replace(".", "").split()
        out.append([category, " ".join(words[:target])])
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", "text"])
        writer.writerows(out)
    return path


def write_data_root(folder, seed=0):
    """A whole data root under folder (ag_news/, conll2003/, stsbenchmark/, bbc_sport_politics/); returns folder."""
    folder = Path(folder)
    write_ag_news(folder / "ag_news", seed=seed)
    write_conll(folder / "conll2003" / "train.txt", conll_sentences(400, seed))
    write_conll(folder / "conll2003" / "valid.txt", conll_sentences(150, seed + 1))
    write_sts(folder / "stsbenchmark" / "sts-dev.csv", seed=seed)
    write_bbc(folder / "bbc_sport_politics" / "bbc-text.csv", seed=seed)
    return folder
