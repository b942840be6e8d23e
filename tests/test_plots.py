"""MGP reconstruction grid (modeling_livt.evaluation.plots.mgp_reconstruction_grid) and its picture."""

import pytest
import torch
from PIL import Image

import modeling_livt as ml
from modeling_livt.evaluation.plots import mgp_reconstruction_grid, plot_mgp_reconstructions
from tests.helpers import tiny_livt_config

MEAN, STD = (0.2, 0.3, 0.4), (0.5, 0.25, 0.2)


def _model(**overrides):
    torch.manual_seed(0)
    return ml.LiVTForMaskedImageModeling(tiny_livt_config(**overrides)).eval()


def _pixel_mask_by_hand(noise, mask_ratio, grid, p):
    """`[N, 1, H, W]` 1 on masked patches, from the noise alone: the len_keep smallest noises are kept (MAE)."""
    n, num_patches = noise.shape
    len_keep = int(num_patches * (1 - mask_ratio))
    mask = torch.ones(n, 1, grid * p, grid * p)
    for i in range(n):
        for patch in noise[i].argsort()[:len_keep].tolist():
            row, col = divmod(patch, grid)
            mask[i, :, row * p : (row + 1) * p, col * p : (col + 1) * p] = 0
    return mask


def _image_from_patches_by_hand(patches, grid, p, channels=3):
    """`[N, L, p*p*C]` -> `[N, C, H, W]`, one patch at a time (row-major patches, each p, p, C)."""
    n = patches.shape[0]
    out = torch.empty(n, channels, grid * p, grid * p)
    for i in range(n):
        for patch in range(grid * grid):
            row, col = divmod(patch, grid)
            out[i, :, row * p : (row + 1) * p, col * p : (col + 1) * p] = (
                patches[i, patch].reshape(p, p, channels).permute(2, 0, 1)
            )
    return out


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_grid_masks_and_pastes_by_the_mask(norm_pix_loss):
    model = _model(norm_pix_loss=norm_pix_loss)
    p, grid_size = model.config.patch_size, model.config.image_size // model.config.patch_size
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(3, 3, 32, 32, generator=generator)
    noise = torch.rand(3, grid_size**2, generator=generator)
    grid = mgp_reconstruction_grid(model, pixel_values, noise=noise, fill=0.0)

    mask = _pixel_mask_by_hand(noise, model.config.mask_ratio, grid_size, p).expand(-1, 3, -1, -1).bool()
    assert torch.equal(grid["mask"].expand(-1, 3, -1, -1).bool(), mask)
    assert int(mask[:, 0].sum()) == 3 * (grid_size**2 - int(grid_size**2 * 0.25)) * p * p
    torch.testing.assert_close(grid["original"], pixel_values)
    # masked input: exactly the fill where masked, the original where visible
    assert torch.all(grid["masked"][mask] == 0.0)
    assert torch.equal(grid["masked"][~mask], pixel_values[~mask])
    # the reconstruction, rebuilt independently from the model's per-patch prediction
    with torch.no_grad():
        pred = model(pixel_values, noise=noise).logits
    if norm_pix_loss:
        target = torch.stack([pixel_values[:, :, r * p : (r + 1) * p, c * p : (c + 1) * p].permute(0, 2, 3, 1)
                              .reshape(3, -1) for r in range(grid_size) for c in range(grid_size)], dim=1)
        mean, std = target.mean(dim=-1, keepdim=True), (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        torch.testing.assert_close(grid["prediction_normalised"], _image_from_patches_by_hand(pred, grid_size, p))
        torch.testing.assert_close(
            grid["target_normalised"], _image_from_patches_by_hand((target - mean) / std, grid_size, p)
        )
        pred = pred * std + mean
    else:
        assert "target_normalised" not in grid and "prediction_normalised" not in grid
    expected = _image_from_patches_by_hand(pred, grid_size, p)
    torch.testing.assert_close(grid["reconstruction"], expected, rtol=1e-5, atol=1e-5)
    # pasted: the original where visible, the reconstruction where masked
    assert torch.equal(grid["pasted"][~mask], pixel_values[~mask])
    assert torch.equal(grid["pasted"][mask], grid["reconstruction"][mask])
    assert not torch.allclose(grid["pasted"], grid["original"])  # the masked part is not a copy


def test_grid_fill_mean_std_and_fixed_default_noise():
    model = _model()
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    grid = mgp_reconstruction_grid(model, pixel_values, image_mean=MEAN, image_std=STD)
    again = mgp_reconstruction_grid(model, pixel_values, image_mean=MEAN, image_std=STD)
    assert torch.equal(grid["mask"], again["mask"]) and torch.equal(grid["pasted"], again["pasted"])
    assert not torch.equal(mgp_reconstruction_grid(model, pixel_values, seed=1)["mask"], grid["mask"])
    rgb = pixel_values * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(grid["original"], rgb)
    mask = grid["mask"].expand(-1, 3, -1, -1).bool()
    assert torch.all(grid["masked"][mask] == 0.5)  # default fill: mid grey in RGB
    torch.testing.assert_close(grid["masked"][~mask], rgb[~mask])
    assert model.training is False
    model.train()
    mgp_reconstruction_grid(model, pixel_values)
    assert model.training is True  # the mode is restored


def _normalised_target(model, pixel_values):
    target = model.patchify(pixel_values)
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + 1.0e-6) ** 0.5


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_perfect_prediction_reconstructs_the_image(monkeypatch, norm_pix_loss):
    """A decoder that outputs exactly the (normalised) target must give back the original image."""
    model = _model(norm_pix_loss=norm_pix_loss)
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 1.7 + 0.3
    target = _normalised_target(model, pixel_values) if norm_pix_loss else model.patchify(pixel_values)
    monkeypatch.setattr(model.decoder, "forward", lambda *args, **kwargs: target)
    grid = mgp_reconstruction_grid(model, pixel_values, image_mean=MEAN, image_std=STD)
    assert float(grid["loss"]) < 1e-8  # the forced prediction is the loss's own target
    torch.testing.assert_close(grid["reconstruction"], grid["original"], rtol=0, atol=1e-4)
    torch.testing.assert_close(grid["pasted"], grid["original"], rtol=0, atol=1e-4)
    if norm_pix_loss:
        torch.testing.assert_close(grid["prediction_normalised"], grid["target_normalised"])


def test_plot_writes_a_grid_png(tmp_path):
    model = _model()
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    grid = mgp_reconstruction_grid(model, pixel_values, image_mean=MEAN, image_std=STD)
    path = tmp_path / "sub" / "grid.png"
    assert plot_mgp_reconstructions(grid, path, title="t") == str(path)
    with Image.open(path) as image:
        width, height = image.size
    assert width > 0 and height > 0
    plain = mgp_reconstruction_grid(_model(norm_pix_loss=False), pixel_values, image_mean=MEAN, image_std=STD)
    with Image.open(plot_mgp_reconstructions(plain, tmp_path / "plain.png")) as image:
        assert image.size[0] < width  # no per-patch normalised columns without norm-pix
    with pytest.raises(ValueError, match="no image"):
        plot_mgp_reconstructions({k: v[:0] for k, v in grid.items() if v.dim()}, tmp_path / "empty.png")
