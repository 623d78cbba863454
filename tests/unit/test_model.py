"""The network: the fast per-direction computation is the packed one, and padding never matters."""

from __future__ import annotations

import random

import pytest
import torch

from training.batching import collate
from training.model import BiLSTMClassifier, ModelConfig


def random_ids(n: int, seed: int, max_len: int = 60) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(2, 300) for _ in range(rng.choice([0, 1, 2, 7, 30, max_len]))] for _ in range(n)]


@pytest.mark.parametrize("layers", [1, 2])
def test_per_direction_equals_packed_after_training_steps(layers: int) -> None:
    torch.manual_seed(0)
    model = BiLSTMClassifier(
        ModelConfig(vocab_size=300, num_classes=3, embedding_dim=8, hidden_size=12, num_layers=layers, dropout=0.2)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    ids, lengths = collate(random_ids(32, seed=1), torch.device("cpu"))
    labels = torch.randint(0, 3, (32,))
    for _ in range(5):  # weights move away from their initial values
        model.train()
        loss = torch.nn.functional.cross_entropy(model(ids, lengths), labels)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
        optimizer.step()
    model.eval()
    with torch.no_grad():
        fast, packed = model(ids, lengths), model(ids, lengths, packed=True)
    torch.testing.assert_close(fast, packed, atol=1e-5, rtol=0)


def test_padding_and_neighbours_never_change_a_prediction() -> None:
    torch.manual_seed(1)
    model = BiLSTMClassifier(ModelConfig(vocab_size=300, num_classes=2, embedding_dim=8, hidden_size=12)).eval()
    texts = random_ids(8, seed=2)
    with torch.no_grad():
        together = model(*collate(texts, torch.device("cpu")))
        for i, text in enumerate(texts):
            ids, lengths = collate([text], torch.device("cpu"))
            padded = torch.nn.functional.pad(ids, (0, 50))  # 50 extra padding columns
            alone = model(padded, lengths)
            torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=0)


def test_gradients_reach_both_directions() -> None:
    model = BiLSTMClassifier(ModelConfig(vocab_size=300, num_classes=2, embedding_dim=4, hidden_size=4))
    ids, lengths = collate(random_ids(4, seed=3, max_len=10), torch.device("cpu"))
    model(ids, lengths).sum().backward()
    for name in ("weight_ih_l0", "weight_ih_l0_reverse", "weight_hh_l0", "weight_hh_l0_reverse"):
        grad = getattr(model.lstm, name).grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("ends", [False, True])
def test_order_aware_pooling_is_packed_exact_too(ends: bool) -> None:
    torch.manual_seed(2)
    model = BiLSTMClassifier(ModelConfig(vocab_size=300, num_classes=2, embedding_dim=8, hidden_size=6, ends=ends))
    ids, lengths = collate(random_ids(16, seed=4), torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, lengths), model(ids, lengths, packed=True), atol=1e-5, rtol=0)
    assert model.head.in_features == (6 if ends else 4) * 6


def test_word_vectors_are_projected_frozen_and_unseen_words_keep_them() -> None:
    """A token with a vector is embedded as projection(vector) + its own residual (zero at first); training
    moves the projection and the residuals of the tokens it sees, never the vectors, so a token no text
    used stays exactly where the projection puts its vector."""
    torch.manual_seed(3)
    model = BiLSTMClassifier(ModelConfig(vocab_size=50, num_classes=2, embedding_dim=8, hidden_size=4, vector_dim=5))
    vectors = torch.randn(50, 5)
    vectors[0] = 0  # padding
    model.embedding.vectors.copy_(vectors)
    unseen = 49
    before = model.embedding.table()[unseen].detach().clone()
    torch.testing.assert_close(before, model.embedding.projection(vectors[unseen]).detach())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    ids, lengths = collate([[1, 2, 3], [4, 5]], torch.device("cpu"))
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(ids, lengths), torch.tensor([0, 1]))
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward untyped
        optimizer.step()
    assert torch.equal(model.embedding.vectors, vectors)
    assert model.embedding.residual.weight[unseen].abs().sum() == 0  # never seen, never moved
    assert model.embedding.residual.weight[1].abs().sum() > 0
    projected = model.embedding.projection(vectors[unseen]).detach()
    torch.testing.assert_close(model.embedding.table()[unseen].detach(), projected)
    assert not torch.allclose(projected, before)  # the projection learned
