"""The TRACE-compatible metrics agree with transcriptions of TRACE's published formulas, and
ROUGE-L scores non-Latin scripts on their words."""

from __future__ import annotations

import pytest

from retain.evaluation.metrics import get_metric
from retain.evaluation.metrics.tokens import multilingual_tokens

ASCII_PAIRS = [
    ("the cat sat on the mat", "the cat is on the mat"),
    ("A quick brown fox jumps over the lazy dog.", "the quick brown fox jumped over a lazy dog"),
    ("Revenue rose 12% in Q3, beating forecasts.", "Q3 revenue rose by 12 percent"),
    ("don't stop-believing; hold_on", "Don't stop believing, hold on!"),
    ("", "nothing predicted"),
    ("x y z", "a b c"),
    ("The Fed kept rates at 5.25%.", "the fed held rates at 5.25 %"),
]


def test_rouge_l_is_rouge_score_on_ascii_text() -> None:
    from rouge_score import rouge_scorer

    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = get_metric("rouge_l")
    for prediction, target in ASCII_PAIRS:
        assert rouge.score(prediction, target) == reference.score(target, prediction)["rougeL"].fmeasure


def test_rouge_l_scores_chinese_and_german_on_their_words() -> None:
    rouge = get_metric("rouge_l")
    assert multilingual_tokens("支持Größe 2") == ["支", "持", "größe", "2"]
    assert rouge.score("支持", "支持") == 1.0  # rouge-score's own tokens: none, score 0
    # 4 characters against 5, LCS 我喜欢猫 (4): P 1, R 4/5
    assert rouge.score("我喜欢猫", "我很喜欢猫") == pytest.approx(2 * 1 * 0.8 / 1.8)
    assert rouge.score("Die Größe ist gut", "die Größe war gut") == pytest.approx(0.75)
    assert rouge.score("Größe", "Grösse") == 0.0  # whole words: no partial credit for 'gr'


# --- transcriptions of TRACE's published evaluation (metrics.py and the packages it calls) -----
# Each follows the published code's own steps (string n-grams, Fractions, recursive traceback,
# the fuzzywuzzy decorators), deliberately not retain's code path.

#: (source, prediction, target): repeats, several sentences, answers under 4 tokens, an empty
#: answer, Chinese and German, code with literal placeholders, ratios that round at .5
EXAMPLES = [
    ("About 95 species are currently accepted. The species are found in the mountains.",
     "About 95 species are accepted. They live in the mountains.",
     "About 95 species are currently known. They are found in mountains."),
    ("the cat and the dog and the bird sat on the mat", "the cat and the dog sat on the mat",
     "the cat and the dog and the bird sat"),
    ("Er sagte, dass die Größe wichtig ist.", "Die Größe ist wichtig.", "Er sagt: die Größe ist wichtig."),
    ("", "", "an empty answer"),
    ("short", "yes", "yes"),
    ("Q", "no no no no", "no"),
    ("a b c d e f g h", "abcdefgh", "abcdefgx"),
    ("x", "abcdefgh", "axxxxxxx"),
    ("x", "abcdefgh", "abcdexyz"),
    ("the meeting approved the budget. the council voted.", "The council voted. The meeting approved the budget.",
     "the meeting approved the budget. the council voted against it."),
    ("今天天气很好", "今天天气很好。", "今天 天气 很 好"),
    ("return x", "def f(<STR_LIT:a>): return <NUM_LIT>", "def f(a): return 0"),
]
SOURCES = [s for s, _, _ in EXAMPLES]
PREDICTIONS = [p for _, p, _ in EXAMPLES]
TARGETS = [t for _, _, t in EXAMPLES]


def _trace_mean(score_pair, predictions, targets) -> float:  # type: ignore[no-untyped-def]
    # metrics.py: pairs with an empty side are skipped, the sum divided by all examples
    kept = [score_pair(t, p) for p, t in zip(predictions, targets) if p != "" and t != ""]
    return sum(kept) / len(predictions)


def _reference_bleu4(reference: str, hypothesis: str) -> float:
    """TRACE's bleu_score(gram=4): re.split on white space / '.', nltk 3.5 sentence_bleu."""
    import math
    import re
    import sys
    from fractions import Fraction

    ref = [t for t in re.split(r"\s|\.", reference) if len(t) > 0]
    hyp = [t for t in re.split(r"\s|\.", hypothesis) if len(t) > 0]
    weights = (1.0 / 4.0,) * 4
    numerators, denominators = {}, {}
    for n in range(1, 5):
        hyp_grams = [" ".join(hyp[i:i + n]) for i in range(len(hyp) - n + 1)] if len(hyp) >= n else []
        ref_grams = [" ".join(ref[i:i + n]) for i in range(len(ref) - n + 1)] if len(ref) >= n else []
        clipped = sum(min(hyp_grams.count(g), ref_grams.count(g)) for g in set(hyp_grams))
        numerators[n], denominators[n] = clipped, max(1, len(hyp_grams))
    c, r = len(hyp), len(ref)
    bp = 1.0 if c > r else (0.0 if c == 0 else math.exp(1 - r / c))
    if numerators[1] == 0:
        return 0
    p_n = [Fraction(numerators[n], denominators[n]) for n in range(1, 5)]
    p_n = [p if p.numerator != 0 else sys.float_info.min for p in p_n]  # method0
    return bp * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights, p_n)))


def _reference_rouge_l(hyps: str, refs: str) -> float:
    """Rouge(metrics=['rouge-l']).get_scores(hyps, refs, avg=True)['rouge-l']['f'] of rouge 1.0.1."""
    hyp = [" ".join(s.split()) for s in hyps.split(".") if len(s) > 0]
    ref = [" ".join(s.split()) for s in refs.split(".") if len(s) > 0]
    assert hyp and ref, "the package raises here"

    def words(sentences):  # type: ignore[no-untyped-def]
        out = []
        for s in sentences:
            out.extend(s.split(" "))
        return out

    def recon(x, y):  # type: ignore[no-untyped-def]
        table = {}
        for i in range(len(x) + 1):
            for j in range(len(y) + 1):
                if i == 0 or j == 0:
                    table[i, j] = 0
                elif x[i - 1] == y[j - 1]:
                    table[i, j] = table[i - 1, j - 1] + 1
                else:
                    table[i, j] = max(table[i - 1, j], table[i, j - 1])

        def back(i, j):  # type: ignore[no-untyped-def]
            if i == 0 or j == 0:
                return []
            if x[i - 1] == y[j - 1]:
                return back(i - 1, j - 1) + [x[i - 1]]
            if table[i - 1, j] > table[i, j - 1]:
                return back(i - 1, j)
            return back(i, j - 1)

        return set(back(len(x), len(y)))

    m, n = len(set(words(ref))), len(set(words(hyp)))
    union: set[str] = set()
    llcs = 0
    for ref_s in ref:  # rouge_l_summary_level(evaluated=hyp, reference=ref)
        before = len(union)
        for eval_s in hyp:
            union = union | recon(ref_s.split(" "), eval_s.split(" "))
        llcs += len(union) - before
    r_lcs, p_lcs = llcs / m, llcs / n
    return 2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8))


def _reference_sari(source: str, prediction: str, target: str) -> float:
    """SARIsent of the SARI script `datasets.load_metric('sari')` runs, one reference, after its
    normalize (lowercase, sacrebleu 13a)."""
    from collections import Counter

    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    tok = Tokenizer13a()
    ssent, csent, rsents = tok(source.lower()), tok(prediction.lower()), [tok(target.lower())]
    numref = len(rsents)

    def grams(sent):  # type: ignore[no-untyped-def]
        one = sent.split(" ")
        two, three, four = [], [], []
        for i in range(0, len(one) - 1):
            if i < len(one) - 1:
                two.append(one[i] + " " + one[i + 1])
            if i < len(one) - 2:
                three.append(one[i] + " " + one[i + 1] + " " + one[i + 2])
            if i < len(one) - 3:
                four.append(one[i] + " " + one[i + 1] + " " + one[i + 2] + " " + one[i + 3])
        return [one, two, three, four]

    def ngram_scores(sgrams, cgrams, rgramslist):  # type: ignore[no-untyped-def]
        rgramcounter = Counter(g for rgrams in rgramslist for g in rgrams)
        s_rep = Counter({g: c * numref for g, c in Counter(sgrams).items()})
        c_rep = Counter({g: c * numref for g, c in Counter(cgrams).items()})
        keep, keep_good, keep_all = s_rep & c_rep, (s_rep & c_rep) & rgramcounter, s_rep & rgramcounter
        t1 = t2 = 0.0
        for g in keep_good:
            t1 += keep_good[g] / keep[g]
            t2 += keep_good[g]
        kp = t1 / len(keep) if len(keep) > 0 else 1
        kr = t2 / sum(keep_all.values()) if len(keep_all) > 0 else 1
        keepscore = 2 * kp * kr / (kp + kr) if kp > 0 or kr > 0 else 0
        dele = s_rep - c_rep
        dele_good = dele - rgramcounter
        d1 = 0.0
        for g in dele_good:
            d1 += dele_good[g] / dele[g]
        dp = d1 / len(dele) if len(dele) > 0 else 1
        add = set(Counter(cgrams)) - set(Counter(sgrams))
        add_good = add & set(rgramcounter)
        add_all = set(rgramcounter) - set(Counter(sgrams))
        ap = len(add_good) / len(add) if len(add) > 0 else 1
        ar = len(add_good) / len(add_all) if len(add_all) > 0 else 1
        addscore = 2 * ap * ar / (ap + ar) if ap > 0 or ar > 0 else 0
        return keepscore, dp, addscore

    s, c = grams(ssent), grams(csent)
    r = [grams(rs) for rs in rsents]
    per_order = [ngram_scores(s[k], c[k], [rg[k] for rg in r]) for k in range(4)]
    keep = sum(o[0] for o in per_order) / 4
    delete = sum(o[1] for o in per_order) / 4
    add = sum(o[2] for o in per_order) / 4
    return (keep + delete + add) / 3


def _reference_fuzz(prediction: str, target: str) -> int:
    """fuzzywuzzy's fuzz.ratio with python-Levenshtein: equal -> 100, empty -> 0, else
    int(round(100 * Levenshtein.ratio)), ratio = (len sum - distance with substitutions at 2) / len sum."""
    if prediction == target:
        return 100
    if len(prediction) == 0 or len(target) == 0:
        return 0
    previous = list(range(len(target) + 1))
    for i, a in enumerate(prediction, 1):
        row = [i]
        for j, b in enumerate(target, 1):
            row.append(min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (0 if a == b else 2)))
        previous = row
    lensum = len(prediction) + len(target)
    return int(round(100 * ((lensum - previous[-1]) / lensum)))


def _py150_postprocess(code: str) -> str:
    """TRACE's eval_Py150 postprocess: bare placeholders first, then each typed literal found."""
    import re

    code = code.replace("<NUM_LIT>", "0").replace("<STR_LIT>", "").replace("<CHAR_LIT>", "")
    for kind, value in re.findall(re.compile(r"<(STR|NUM|CHAR)_LIT:(.*?)>", re.S), code):
        code = code.replace(f"<{kind}_LIT:{value}>", value)
    return code


def _retain_scores(name: str) -> tuple[list[float], float]:
    metric = get_metric(name)
    scores = [metric.score(p, t, s) for s, p, t in EXAMPLES]
    return scores, metric.aggregate(scores, PREDICTIONS, TARGETS, SOURCES)


def test_bleu_trace_is_traces_mean_sentence_bleu4() -> None:
    scores, task_score = _retain_scores("bleu_trace")
    for (_, p, t), score in zip(EXAMPLES, scores):
        assert score == pytest.approx(_reference_bleu4(t, p) if p and t else 0.0, rel=1e-12, abs=1e-300)
    assert 0 < scores[4] < 1e-70  # one token, right: unigram 1, higher orders the smallest float
    assert task_score == pytest.approx(100 * _trace_mean(_reference_bleu4, PREDICTIONS, TARGETS), abs=1e-9)


def test_bleu_trace_is_nltk_sentence_bleu_where_nltk_is_installed() -> None:
    import re
    import warnings

    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    metric = get_metric("bleu_trace")
    for _, p, t in EXAMPLES:
        if p and t:
            tokens = [[x for x in re.split(r"\s|\.", text) if x] for text in (t, p)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = bleu_score.sentence_bleu([tokens[0]], tokens[1], (0.25, 0.25, 0.25, 0.25))
            assert metric.score(p, t) == expected


def test_rouge_l_trace_is_the_rouge_packages_f_with_target_as_hypothesis() -> None:
    scores, task_score = _retain_scores("rouge_l_trace")
    for (_, p, t), score in zip(EXAMPLES, scores):
        assert score == (_reference_rouge_l(t, p) if p and t else 0.0)
    assert task_score == pytest.approx(100 * _trace_mean(_reference_rouge_l, PREDICTIONS, TARGETS), abs=1e-9)
    assert get_metric("rouge_l_trace").score("...", "a b") == 0.0  # no sentence: the package raises


def test_sari_trace_is_the_loaded_sari_script_and_counts_repeats() -> None:
    scores, task_score = _retain_scores("sari_trace")
    expected = [_reference_sari(s, p, t) for s, p, t in EXAMPLES]
    for score, reference in zip(scores, expected):
        assert score == pytest.approx(reference, abs=1e-12)
    assert task_score == pytest.approx(100.0 * sum(expected) / len(expected), abs=1e-9)
    source, prediction, target = EXAMPLES[1]  # repeated 'the' and 'and': the set-based sari differs
    assert abs(get_metric("sari").score(prediction, target, source) - scores[1]) > 1e-3


def test_edit_sim_trace_is_fuzzywuzzys_rounded_ratio_after_py150_postprocessing() -> None:
    scores, task_score = _retain_scores("edit_sim_trace")
    outputs = [_py150_postprocess(p) for p in PREDICTIONS]
    gts = [_py150_postprocess(t) for t in TARGETS]
    for score, p, t in zip(scores, outputs, gts):
        assert score == (_reference_fuzz(p, t) / 100 if p and t else 0.0)
    assert [round(100 * s) for s in scores[6:9]] == [88, 12, 62]  # 87.5, 12.5, 62.5: half to even
    assert scores[11] == 1.0  # the placeholders filled in, the code is the target
    assert task_score == pytest.approx(_trace_mean(lambda t, p: _reference_fuzz(p, t), outputs, gts), abs=1e-9)


def test_every_trace_metric_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    from retain.cli import main
    from retain.evaluation.metrics import METRICS

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for name in ("bleu_trace", "rouge_l_trace", "sari_trace", "edit_sim_trace"):
        metric = METRICS[name]()
        assert metric.higher_is_better and metric.range == (0.0, 100.0) and metric.inputs == "text"
        assert f"  {name} " in listed and metric.display_name in listed


def test_accuracy_trace_compares_the_strings_as_they_are() -> None:
    """Hand-computed: retain's normalised accuracy drops the article 'a', so the option letter 'A'
    and the answers '.' and 'a' all normalise to '' and match; TRACE's exact comparison does not."""
    from retain.evaluation.metrics import get_metric

    strict, normalised = get_metric("accuracy_trace"), get_metric("accuracy")
    pairs = [("A", "A"), (".", "A"), ("a", "A"), (" ", "A"), ("B", "A"), ("12", "12"), ("12 ", "12")]
    assert [strict.score(p, t) for p, t in pairs] == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert [normalised.score(p, t) for p, t in pairs[:4]] == [1.0, 1.0, 1.0, 1.0]
    assert strict.aggregate([strict.score(p, t) for p, t in pairs]) == pytest.approx(100 * 2 / 7)
