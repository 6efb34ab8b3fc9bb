import torch

from clearface.train import losses


def test_soft_hter_gradient_is_nonzero_and_matches_definition():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    loss = losses.soft_hter(logits, y)
    p = torch.sigmoid(logits.detach())
    expected = (p[[1, 2]].mean() + (1 - p[[0, 3]]).mean()) / 2
    assert torch.isclose(loss, expected)
    loss.backward()
    assert logits.grad.abs().min() > 0


def test_soft_hter_single_class_batch():
    logits = torch.zeros(3, requires_grad=True)
    loss = losses.soft_hter(logits, torch.ones(3))
    loss.backward()
    assert loss.item() == 0.25 and logits.grad.abs().sum() > 0


def test_pos_weight_scales_only_positive_terms():
    logits = torch.tensor([0.3, -0.2])
    pos_only = losses.bce(logits[:1], torch.tensor([1.0]), pos_weight=0.5)
    plain = losses.bce(logits[:1], torch.tensor([1.0]))
    assert torch.isclose(pos_only, plain * 0.5)
    neg_only = losses.bce(logits[1:], torch.tensor([0.0]), pos_weight=0.5)
    assert torch.isclose(neg_only, losses.bce(logits[1:], torch.tensor([0.0])))


def test_focal_downweights_easy_examples():
    y = torch.tensor([1.0])
    easy, hard = torch.tensor([4.0]), torch.tensor([-1.0])
    ratio_focal = losses.focal(easy, y) / losses.focal(hard, y)
    ratio_bce = losses.bce(easy, y) / losses.bce(hard, y)
    assert ratio_focal < ratio_bce
