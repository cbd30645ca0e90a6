"""The examples of pytorch-ignite's ``Engine`` docstring, run with nbengine imports on real data.

Data: scikit-learn's bundled 8x8 digits (no download). Each example is written as the docstring
writes it (CPU instead of ``.cuda()``), then its result is checked against a direct computation.
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score

from nbengine.engine import Engine, Events
from nbengine.metrics import Accuracy, Average
from nbengine.utils import convert_tensor


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
    labels = torch.tensor(bunch.target)
    return images, labels


def make_loader(images, labels, batch_size, shuffle, seed=0):
    dataset = torch.utils.data.TensorDataset(images, labels)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed)
    )


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def test_basic_trainer_logs_every_100_iterations(digits, capsys):
    images, labels = digits
    data_loader = make_loader(images, labels, batch_size=16, shuffle=True)  # 113 iterations per epoch
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = torch.nn.CrossEntropyLoss()

    def train_step(engine, batch):
        model.train()
        inputs, targets = batch[0], batch[1]
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    trainer = Engine(train_step)

    @trainer.on(Events.ITERATION_COMPLETED(every=100))
    def log_training(engine):
        batch_loss = engine.state.output
        lr = optimizer.param_groups[0]["lr"]
        e = engine.state.epoch
        n = engine.state.max_epochs
        i = engine.state.iteration
        print(f"Epoch {e}/{n} : {i} - batch loss: {batch_loss}, lr: {lr}")

    losses = {}
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: losses.update({engine.state.iteration: engine.state.output}))
    trainer.run(data_loader, max_epochs=5)

    printed = capsys.readouterr().out.splitlines()
    expected = [
        f"Epoch {(i - 1) // 113 + 1}/5 : {i} - batch loss: {losses[i]}, lr: 0.01" for i in range(100, 5 * 113 + 1, 100)
    ]
    assert printed == expected
    assert len(printed) == 5
    assert np.mean([losses[i] for i in range(453, 566)]) < np.mean([losses[i] for i in range(1, 114)])


def test_basic_evaluator_computes_accuracy(digits):
    images, labels = digits
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(30):  # a little full-batch training so that the accuracy is not chance
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    val_dataloader = make_loader(images[1500:], labels[1500:], batch_size=50, shuffle=False)
    device, non_blocking = "cpu", False

    def prepare_batch(batch, device=None, non_blocking=False):
        x, y = batch
        return convert_tensor(x, device, non_blocking), convert_tensor(y, device, non_blocking)

    def predict_on_batch(engine, batch):
        model.eval()
        with torch.no_grad():
            x, y = prepare_batch(batch, device=device, non_blocking=non_blocking)
            y_pred = model(x)
        return y_pred, y

    evaluator = Engine(predict_on_batch)
    Accuracy().attach(evaluator, "val_acc")
    evaluator.run(val_dataloader)

    with torch.no_grad():
        predicted = model(images[1500:]).argmax(dim=1)
    expected = accuracy_score(labels[1500:].numpy(), predicted.numpy())
    assert evaluator.state.metrics["val_acc"] == expected
    assert expected > 0.5


def test_image_mean_and_std_with_average(digits):
    images, _ = digits
    images = images.repeat(1, 3, 1, 1) * torch.tensor([1.0, 0.5, 2.0]).view(1, 3, 1, 1)  # three channels
    train_loader = [{"image": images[i : i + 100]} for i in range(0, len(images), 100)]  # last batch: 97 images

    # The docstring sums the per-image means over the batch (.sum(dim=0)), which Average, in ignite and
    # here alike, counts as ONE sample per batch: its "mean" would be the mean per-batch sum. Returning the
    # (batch, channels) per-image means lets Average count every image, which is what the example means.
    def compute_mean_std(engine, batch):
        b, c, *_ = batch["image"].shape
        data = batch["image"].reshape(b, c, -1).to(dtype=torch.float64)
        mean = torch.mean(data, dim=-1)
        mean2 = torch.mean(data**2, dim=-1)
        return {"mean": mean, "mean^2": mean2}

    compute_engine = Engine(compute_mean_std)
    img_mean = Average(output_transform=lambda output: output["mean"])
    img_mean.attach(compute_engine, "mean")
    img_mean2 = Average(output_transform=lambda output: output["mean^2"])
    img_mean2.attach(compute_engine, "mean2")
    state = compute_engine.run(train_loader)
    state.metrics["std"] = torch.sqrt(state.metrics["mean2"] - state.metrics["mean"] ** 2)
    mean = state.metrics["mean"].tolist()
    std = state.metrics["std"].tolist()

    pixels = images.double().numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(axis=1), rtol=1e-10)


def test_image_mean_as_the_docstring_writes_it_counts_batches_like_ignite(digits):
    images, _ = digits
    train_loader = [{"image": images[i : i + 100]} for i in range(0, len(images), 100)]

    def compute_mean(engine, batch):
        b, c, *_ = batch["image"].shape
        data = batch["image"].reshape(b, c, -1).to(dtype=torch.float64)
        return {"mean": torch.mean(data, dim=-1).sum(dim=0)}

    compute_engine = Engine(compute_mean)
    Average(output_transform=lambda output: output["mean"]).attach(compute_engine, "mean")
    state = compute_engine.run(train_loader)
    per_image_means = images.double().mean(dim=(1, 2, 3))
    per_batch_sums = [per_image_means[i : i + 100].sum().item() for i in range(0, len(images), 100)]
    assert state.metrics["mean"].item() == pytest.approx(np.mean(per_batch_sums), rel=1e-12)


def test_readme_example_validates_every_epoch_with_a_progress_bar(digits, capsys):
    """pytorch-ignite's README example, plus the ProgressBar of create_supervised_trainer's docstring."""
    import io

    from nbengine.engine import create_supervised_evaluator, create_supervised_trainer
    from nbengine.handlers import ProgressBar

    images, labels = digits
    training_data_loader = make_loader(images[:1500], labels[:1500], batch_size=32, shuffle=True)
    validation_data_loader = make_loader(images[1500:], labels[1500:], batch_size=100, shuffle=False)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    trainer = create_supervised_trainer(model, optimizer, torch.nn.CrossEntropyLoss())
    bar_stream = io.StringIO()
    pbar = ProgressBar(file=bar_stream)
    pbar.attach(trainer, output_transform=lambda x: {"loss": x})

    # Setup single model evaluation engine
    evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()})

    def validation():
        state = evaluator.run(validation_data_loader)
        # print computed metrics
        print(trainer.state.epoch, state.metrics)

    # Run model's validation at the end of each epoch
    trainer.add_event_handler(Events.EPOCH_COMPLETED, validation)

    # Start the training
    trainer.run(training_data_loader, max_epochs=3)

    printed = capsys.readouterr().out.splitlines()
    with torch.no_grad():
        final_accuracy = accuracy_score(labels[1500:].numpy(), model(images[1500:]).argmax(1).numpy())
    assert [line.split(" ")[0] for line in printed] == ["1", "2", "3"]
    assert printed[-1] == f"3 {{'accuracy': {final_accuracy}}}"
    assert final_accuracy >= 0.85  # measured 0.892 after these 3 epochs
    # Not persisted (the default), so each epoch's bar is drawn, then wiped when the epoch completes.
    bars = bar_stream.getvalue()
    assert all(f"\rEpoch [{epoch}/3]: [1/47]" in bars for epoch in (1, 2, 3))
    assert bars.endswith(" \r") and "\n" not in bars
