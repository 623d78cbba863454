"""The network: the fast per-direction computation is the packed one, and padding never matters."""

from __future__ import annotations

import random

import pytest
import torch

from training.batching import collate, source_mixed_batches
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


def test_source_mixed_batches_put_every_source_in_every_batch_and_every_text_in_one() -> None:
    rng = random.Random(3)
    sources = ["imdb"] * 900 + ["rotten_tomatoes"] * 300
    lengths = [rng.randrange(100, 800) for _ in range(900)] + [rng.randrange(5, 40) for _ in range(300)]
    batches = source_mixed_batches(lengths, sources, 64, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(1200))
    assert all({sources[i] for i in b} == {"imdb", "rotten_tomatoes"} for b in batches)
    assert max(len(b) for b in batches) <= 64 + 1 and len(batches) == -(-900 // 48)
    imdb_lengths = [[lengths[i] for i in b if sources[i] == "imdb"] for b in batches]
    spread = sum(max(x) - min(x) for x in imdb_lengths) / len(batches)
    assert spread < 100  # the largest source stays length-bucketed
