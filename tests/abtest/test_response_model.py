"""The user-response models of the offline prediction (abtest.response_model): the text features they
read, and the feed model's fit on a synthetic feed with known response."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from abtest.offline import response_model as rm

TOPIC_WORDS = [[f"{'abcdefghij'[t]}{'klmnopqr'[k]}word" for k in range(8)] for t in range(10)]
TEMPLATES = ["my day with {}", "{} challenge gone wrong", "trying {} for the first time", "{} tips nobody tells you"]


def test_bag_of_words_keeps_subject_words_and_drops_template_words():
    rng = np.random.default_rng(0)
    texts = [TEMPLATES[i % 4].format(TOPIC_WORDS[i % 10][rng.integers(8)]) for i in range(400)]
    bow = rm.bag_of_words(texts)
    norms = np.sqrt(np.asarray(bow.multiply(bow).sum(axis=1)).ravel())
    assert np.allclose(norms, 1.0)
    sim = (bow @ bow.T).toarray()
    subject = [t.split()[[w in sum(TOPIC_WORDS, []) for w in t.split()].index(True)] for t in texts]
    pairs = [(i, j) for i in range(60) for j in range(60) if i != j]
    assert all(sim[i, j] > 0.3 for i, j in pairs if subject[i] == subject[j])  # the same subject word
    assert all(sim[i, j] == 0.0 for i, j in pairs if subject[i] != subject[j])  # template words only: nothing


def test_comment_text_features_split_subject_words_from_form_words():
    """Subject: the words a comment shares with the titles; form: every other word (its template).
    Two comments on one subject in two templates share their subject, not their form; comments in
    one template on different subjects share their form, not their subject."""
    words = sum(TOPIC_WORDS, [])
    titles = [f"my day with {w}" for w in words]
    forms = ["lol the {} at the end", "where can i find that {}?"]
    texts = [forms[i % 2].format(words[i // 2]) for i in range(2 * len(words))]  # each subject twice
    subject, form = rm.comment_text_features(texts, titles)
    s, f = (subject @ subject.T).toarray(), (form @ form.T).toarray()
    for i in range(0, len(texts), 2):  # one subject, two forms
        assert s[i, i + 1] == pytest.approx(1.0) and f[i, i + 1] == 0.0
    assert f[0, 2] == pytest.approx(1.0) and f[1, 3] == pytest.approx(1.0)  # one form, two subjects
    assert s[0, 2] == 0.0 and s[1, 3] == 0.0
    for m in (subject, form):
        assert np.allclose(np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel()), 1.0)


def synthetic_feed(rng, n_users=200, n_videos=300, requests=30, K=8):
    topic = rng.integers(10, size=n_videos)
    titles = [TEMPLATES[v % 4].format(TOPIC_WORDS[topic[v]][rng.integers(8)]) for v in range(n_videos)]
    taste = rng.dirichlet(np.full(10, 0.3), size=n_users)
    users = np.repeat(np.arange(n_users), requests)
    items = np.stack([rng.choice(n_videos, K, replace=False) for _ in users])
    aff = taste[users[:, None], topic[items]]

    def respond(items_, aff_):
        p_play = 1 / (1 + np.exp(-(-1.5 + 6 * (aff_ - 0.1))))
        frac = 1 / (1 + np.exp(-(-0.3 + 3 * (aff_ - 0.1))))
        return p_play, frac

    p_play, mean_frac = respond(items, aff)
    played = rng.random(items.shape) < p_play
    frac = np.where(played, np.clip(mean_frac + 0.05 * rng.standard_normal(items.shape), 0.01, 0.99), 0.0)
    d = rm.FeedData(users, np.zeros(len(users), np.int64), items, np.ones(items.shape, bool), frac, np.zeros(items.shape),
                    rm.bag_of_words(titles), np.full(n_videos, 20.0), sp.csr_matrix((len(users), n_videos)))
    return d, taste, topic, respond


def test_feed_model_is_calibrated_on_the_logs_and_ranks_other_slates_by_their_true_value():
    rng = np.random.default_rng(1)
    d, taste, topic, respond = synthetic_feed(rng)
    ctx = rm.FeedContext(d)
    model = rm.fit_feed(d, ctx)
    logged = rm.predict_feed(model, ctx, d.items, "frac")
    assert logged.mean() == pytest.approx(d.frac.mean(), rel=0.03)
    # each user's best- and worst-matching videos of the whole catalogue (what an oracle would show)
    aff = taste[d.users[:, None], topic[np.arange(d.bow.shape[0])][None, :]]  # [n, V]
    best = np.argsort(-aff, axis=1)[:, :8]
    worst = np.argsort(aff, axis=1)[:, :8]
    values = {}
    for name, items in (("best", best), ("worst", worst)):
        p, f = respond(items, taste[d.users[:, None], topic[items]])
        values[name] = (float((p * f).mean()), float(rm.predict_feed(model, ctx, items, "frac").mean()))
    (true_best, pred_best), (true_worst, pred_worst) = values["best"], values["worst"]
    # ordered as the truth orders them, and shrunk towards the logged mean: a model fitted on the logs
    # knows less than the truth does (so an oracle's advantage is under-predicted)
    assert true_worst < pred_worst < d.frac.mean() < pred_best < true_best
    assert (pred_best - pred_worst) > 0.3 * (true_best - true_worst)  # 40% of the true spread here
