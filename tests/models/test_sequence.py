"""The sequence user tower (ebr.models.sequence): padding and masking are exact (a padded sequence's
output is the output of the same sequence run alone, pads change nothing), attention pooling is
the softmax a hand computation gives, and the dense all-action objective's rows are the prefix
embeddings, its loss the cross-entropy numpy computes."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from ebr.data.batching import Batch, PositionTargets, TowerInput
from ebr.data.sequences import (
    ACTIONS,
    GAP_BUCKETS,
    SEQUENCE_ACTION,
    SEQUENCE_FEATURES,
    SEQUENCE_GAP,
    SEQUENCE_PIN,
)
from ebr.models.crossing.mlp import MLPCrossing
from ebr.models.loss import SampledSoftmaxLoss
from ebr.models.sequence import SequenceEncoder
from ebr.models.tower import TowerSpec
from ebr.models.two_tower import TowerParts, TwoTowerModel

N, PINS = 6, 20
SEQUENCES = [[3, 7, 7, 1], [], [2, 9, 4, 4, 11, 5], [8]]


def _ids(sequences: list[list[int]], width: int = N) -> dict[str, torch.Tensor]:
    """Right-padded id tensors; the pads hold arbitrary (valid) ids."""
    generator = np.random.default_rng(1)
    out = {}
    for name, high in ((SEQUENCE_PIN, PINS), (SEQUENCE_ACTION, ACTIONS), (SEQUENCE_GAP, GAP_BUCKETS)):
        grid = generator.integers(0, high, (len(sequences), width))
        for row, pins in enumerate(sequences):
            real = pins if name == SEQUENCE_PIN else [(p * 7 + len(name)) % high for p in pins]
            grid[row, : len(pins)] = real
        out[name] = torch.from_numpy(grid)
    return out


def _keyed(sequences: list[list[int]], extra: dict[str, list[int]] | None = None) -> KeyedJaggedTensor:
    """User-tower input: the sequences as bags (+ one id per row of the `extra` features)."""
    ids = _ids(sequences)
    keys, lengths, values = [], [], []
    for name, per_row in (extra or {}).items():
        keys.append(name)
        lengths += [1] * len(per_row)
        values += per_row
    for name in SEQUENCE_FEATURES:
        keys.append(name)
        for row, pins in enumerate(sequences):
            lengths.append(len(pins))
            values += ids[name][row, : len(pins)].tolist()
    return KeyedJaggedTensor.from_lengths_sync(
        keys=keys,
        values=torch.tensor(values),
        lengths=torch.tensor(lengths, dtype=torch.int32),
        weights=torch.ones(len(values)),
    )


@pytest.fixture(params=["last", "attention"])
def encoder(request) -> SequenceEncoder:
    torch.manual_seed(0)
    model = SequenceEncoder(
        8, PINS, N, layers=2, heads=2, width=16, dropout=0.1, options={"pooling": request.param}
    )
    with torch.no_grad():  # a non-zero query and empty row, so that both matter
        for parameter in (model.query, model.empty):
            if parameter is not None:
                parameter.normal_()
    return model.eval()


def test_a_padded_sequence_gives_the_output_of_the_sequence_run_alone(encoder) -> None:
    lengths = torch.tensor([len(s) for s in SEQUENCES])
    with torch.no_grad():
        states = encoder.encode_ids(_ids(SEQUENCES), lengths)
        pooled = encoder.pool(states, lengths)
        for row, pins in enumerate(SEQUENCES):
            if not pins:
                expected = encoder.output(encoder.empty)
                torch.testing.assert_close(pooled[row], expected, rtol=0, atol=1e-6)
                continue
            alone = {name: values[row : row + 1, : len(pins)] for name, values in _ids(SEQUENCES).items()}
            alone_states = encoder.encode_ids(alone, lengths[row : row + 1])
            torch.testing.assert_close(states[row, : len(pins)], alone_states[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(
                pooled[row], encoder.pool(alone_states, lengths[row : row + 1])[0], rtol=0, atol=1e-5
            )


def test_pads_and_later_positions_do_not_change_earlier_outputs(encoder) -> None:
    lengths = torch.tensor([len(s) for s in SEQUENCES])
    ids = _ids(SEQUENCES)
    garbage = {name: values.clone() for name, values in ids.items()}
    for row, pins in enumerate(SEQUENCES):
        for name, high in ((SEQUENCE_PIN, PINS), (SEQUENCE_ACTION, ACTIONS), (SEQUENCE_GAP, GAP_BUCKETS)):
            garbage[name][row, len(pins) :] = (garbage[name][row, len(pins) :] + 1) % high
    with torch.no_grad():
        states, changed = encoder.encode_ids(ids, lengths), encoder.encode_ids(garbage, lengths)
        for row, pins in enumerate(SEQUENCES):
            torch.testing.assert_close(states[row, : len(pins)], changed[row, : len(pins)], rtol=0, atol=0)
        torch.testing.assert_close(
            encoder.pool(states, lengths), encoder.pool(changed, lengths), rtol=0, atol=0
        )
        # causality: position j of the 6-long sequence is the last state of its (j + 1)-prefix
        for j in range(N):
            prefix = {name: values[2:3, : j + 1] for name, values in ids.items()}
            last = encoder.encode_ids(prefix, torch.tensor([j + 1]))[0, j]
            torch.testing.assert_close(states[2, j], last, rtol=0, atol=1e-5)


def test_attention_pooling_is_a_softmax_over_the_real_positions(encoder) -> None:
    if encoder.query is None:
        pytest.skip("last-position pooling")
    lengths = torch.tensor([len(s) for s in SEQUENCES])
    with torch.no_grad():
        states = encoder.encode_ids(_ids(SEQUENCES), lengths)
        pooled = encoder.pool(states, lengths).numpy()
    s, q = states.numpy().astype(np.float64), encoder.query.detach().numpy().astype(np.float64)
    weight, bias = (
        p.detach().numpy().astype(np.float64) for p in (encoder.output.weight, encoder.output.bias)
    )
    for row, pins in enumerate(SEQUENCES):
        if not pins:
            continue
        scores = s[row, : len(pins)] @ q / np.sqrt(16)
        attention = np.exp(scores - scores.max())
        attention /= attention.sum()
        expected = weight @ (attention @ s[row, : len(pins)]) + bias
        np.testing.assert_allclose(pooled[row], expected, rtol=1e-4, atol=1e-5)


def _model() -> TwoTowerModel:
    torch.manual_seed(0)
    sequence = {"pin_rows": PINS, "length": N, "layers": 1, "heads": 2, "width": 8, "dropout": 0.0}
    return TwoTowerModel(
        TowerSpec("user", {"user_id": 4}),
        TowerSpec("pin", {"pin_id": PINS}),
        functools.partial(MLPCrossing, hidden=[8]),
        embedding_dim=8,
        output_dim=6,
        parts=TowerParts(sequence=sequence),
    ).eval()


def _pins(ids: list[int]) -> TowerInput:
    keyed = KeyedJaggedTensor.from_lengths_sync(
        keys=["pin_id"],
        values=torch.tensor(ids),
        lengths=torch.ones(len(ids), dtype=torch.int32),
        weights=torch.ones(len(ids)),
    )
    return TowerInput(keyed, torch.zeros(len(ids), 0), torch.tensor(ids))


def test_dense_all_action_rows_are_prefix_embeddings_and_its_loss_the_hand_cross_entropy() -> None:
    model = _model()
    users = {"user_id": [0, 1, 2, 3]}
    user = TowerInput(_keyed(SEQUENCES, users), torch.zeros(4, 0), torch.arange(4))
    rows, positions, targets = [0, 0, 2, 2, 1, 3], [0, 2, 1, 5, 0, 0], [7, 1, 4, 13, 12, 15]
    draws = PositionTargets(torch.tensor(rows), torch.tensor(positions), _pins(targets))
    batch = Batch(user=user, pin=_pins([1, 2, 3, 4]), positions=draws)
    with torch.no_grad():
        user_rows, pin_rows, _ = model(batch)
        # independently: the tower's ordinary embedding of each draw's prefix (position + 1 events)
        prefixes = [SEQUENCES[r][: p + 1] for r, p in zip(rows, positions)]
        prefix_input = _keyed(prefixes, {"user_id": [users["user_id"][r] for r in rows]})
        expected = model.user_tower(prefix_input, torch.zeros(len(rows), 0))
    torch.testing.assert_close(user_rows, expected, rtol=0, atol=1e-5)
    log_q = torch.log(torch.tensor([0.1, 0.2, 0.05, 0.3, 0.1, 0.2]))
    loss = SampledSoftmaxLoss(temperature=0.1)(user_rows, pin_rows, draws.pin.ids, log_q)
    # numpy: logits = <u, p> / T - logQ, duplicates of the row's own target masked, mean CE
    u, p, q = expected.numpy().astype(np.float64), pin_rows.numpy().astype(np.float64), log_q.numpy()
    logits = u @ p.T / 0.1 - q[None, :]
    target_ids = np.array(targets)
    logits[(target_ids[None, :] == target_ids[:, None]) & ~np.eye(len(targets), dtype=bool)] = -np.inf
    shifted = logits - logits.max(axis=1, keepdims=True)
    hand = -np.mean(np.diag(shifted) - np.log(np.exp(shifted).sum(axis=1)))
    assert float(loss) == pytest.approx(hand, rel=1e-5)


def test_the_bag_encoder_changes_nothing_and_bad_settings_are_refused_by_key() -> None:
    from ebr.models.user_encoder import UserEncoderConfig

    bag, towers, data = UserEncoderConfig(), object(), object()
    assert bag.apply(towers, data, None) is towers  # type: ignore[arg-type]
    assert bag.prepare(data, None) is data  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"model\.user_encoder\.kind='list'"):
        UserEncoderConfig(kind="list")
    with pytest.raises(
        ValueError, match=r"model\.user_encoder\.objective=dense_all_action needs pooling=last"
    ):
        UserEncoderConfig(kind="sequence", objective="dense_all_action", pooling="attention")
    with pytest.raises(ValueError, match=r"model\.user_encoder\.length"):
        UserEncoderConfig(kind="sequence", length=0)
