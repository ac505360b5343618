"""The MMA-DFER model core: structure, parameter counts, identities, shapes."""
import pytest
import timm
import torch

from mma_dfer.config import ConfigError, ModelConfig, load_config
from mma_dfer.models import build_model

AUTHORS_TRAINABLE_160 = 7_558_687  # main.py's count, incl. 2 unused norm2 LayerNorms (2 x 1,024)
UNUSED_NORM2 = 2 * 2 * 512


def meta_model(*overrides):
    with torch.device("meta"):
        return build_model(load_config(None, list(overrides)), load_pretrained=False)


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_default_trainable_count_matches_authors_minus_dead_norms():
    assert trainable(meta_model()) == AUTHORS_TRAINABLE_160 - UNUSED_NORM2 == 7_556_639


def test_224_count_grows_by_the_pos_embed_rows():
    # authors: 7,632,415 at 224 (image pos_embed 203 rows instead of 107)
    assert trainable(meta_model("data.resolution=224")) == 7_632_415 - UNUSED_NORM2


@pytest.mark.parametrize("d,paper_millions", [(128, 7.5), (256, 12.3), (512, 21.7)])
def test_latent_size_variants_match_table6(d, paper_millions):
    n = trainable(meta_model(f"model.fusion_dim={d}"))
    assert n == 2_828_831 + 36_936 * d  # 12 blocks x (3,078 d + 1,538) + the rest
    assert abs(n / 1e6 - paper_millions) < 0.1


def test_latent_64_does_not_reach_the_papers_5_9m():
    # Table 6 lists 5.9M for d=64; the same architecture that gives 7.5/12.3/21.7 gives 5.19M.
    assert trainable(meta_model("model.fusion_dim=64")) == 5_192_735


def test_only_adapters_are_trainable():
    model = meta_model()
    for name, p in model.named_parameters():
        in_encoder = name.startswith(("video_encoder.", "audio_encoder."))
        if in_encoder:
            assert p.requires_grad == name.endswith(".pos_embed"), name
        else:
            assert p.requires_grad, name
    parts = {k for k, v in model.param_groups().items() if any(p.requires_grad for _, p in v)}
    assert parts == {"prompts", "pos_embed", "fusion", "jam", "mtt", "classifier"}


def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(tiny_cfg):
    model = build_model(tiny_cfg)
    with torch.no_grad():
        for blk in model.fusion:
            blk.video_gate.fill_(0.5)
            blk.audio_gate.fill_(0.5)
    d = tiny_cfg.data
    model.train()
    logits = model(torch.rand(2, d.num_frames, 3, d.resolution, d.resolution), torch.randn(2, 1, d.audio_frames, 128))
    logits.logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def _timm_reference(encoder, in_chans, size):
    """timm's own VisionTransformer with the encoder's weights (an independent forward pass)."""
    cfg = dict(img_size=size, patch_size=16, in_chans=in_chans, embed_dim=encoder.embed_dim,
               depth=len(encoder.blocks), num_heads=encoder.blocks[0].attn.num_heads, qkv_bias=True,
               num_classes=0, global_pool="token")
    vit = timm.models.vision_transformer.VisionTransformer(**cfg, norm_layer=torch.nn.LayerNorm)
    for m in vit.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.eps = 1e-6
    sd = {k: v for k, v in encoder.state_dict().items()}
    sd["pos_embed"] = sd["pos_embed"][:, : 1 + encoder.num_patches]
    vit.load_state_dict(sd, strict=False)
    return vit.eval()


def test_zero_gates_and_no_prompts_give_the_plain_frozen_encoders(tiny_cfg):
    tiny_cfg.model.num_prompts = tiny_cfg.model.prompt_updates = 0
    model = build_model(tiny_cfg).eval()
    d = tiny_cfg.data
    video = torch.rand(2, d.num_frames, 3, d.resolution, d.resolution)
    audio = torch.randn(2, 1, d.audio_frames, 128)
    with torch.no_grad():
        xv, xa = model.encode(video, audio)
        ref_v = _timm_reference(model.video_encoder, 3, d.resolution).forward_features(video.flatten(0, 1))
        ref_a = _timm_reference(model.audio_encoder, 1, (d.audio_frames, 128)).forward_features(audio)
    torch.testing.assert_close(model.video_encoder.norm(xv), ref_v, rtol=0, atol=1e-5)
    torch.testing.assert_close(model.audio_encoder.norm(xa), ref_a, rtol=0, atol=1e-5)


def test_progressive_prompts_are_added_to_their_slots_only():
    from mma_dfer.models.prompts import ProgressivePrompts

    prompts = ProgressivePrompts(num_prompts=6, num_updates=2, depth=12, dim=4)
    x = torch.zeros(1, 10, 4)  # CLS, 3 patches, 6 prompt slots: offset 4
    after0 = prompts.update(0, x, offset=4)
    torch.testing.assert_close(after0[0, 4:7], prompts.progressive[0].detach())
    assert after0[0, :4].abs().sum() == 0 and after0[0, 7:].abs().sum() == 0
    after6 = prompts.update(6, x, offset=4)
    torch.testing.assert_close(after6[0, 7:10], prompts.progressive[1].detach())
    assert all(prompts.update(i, x, 4) is x for i in (1, 5, 7, 11))
    assert [prompts.update_index(i) for i in range(12)] == [0] + [None] * 5 + [1] + [None] * 5


@pytest.mark.parametrize("updates,blocks", [(12, list(range(12))), (6, [0, 2, 4, 6, 8, 10]), (4, [0, 3, 6, 9]),
                                            (2, [0, 6]), (0, [])])
def test_table7_update_frequencies(updates, blocks):
    from mma_dfer.models.prompts import ProgressivePrompts

    prompts = ProgressivePrompts(num_prompts=12 if updates else 6, num_updates=updates, depth=12, dim=4)
    assert [i for i in range(12) if prompts.update_index(i) is not None] == blocks


def test_invalid_prompt_split_is_a_config_error():
    with pytest.raises(ConfigError, match="model.num_prompts=6 must be a positive multiple of model.prompt_updates=4"):
        load_config(None, ["model.prompt_updates=4"])


@pytest.mark.parametrize("overrides", [
    ["model.fusion=none"], ["model.temporal=mean"], ["model.num_prompts=0", "model.prompt_updates=0"],
    ["model.prompt_updates=0"], ["model.modalities=video", "model.fusion=none"],
    ["model.modalities=audio", "model.fusion=none"], ["model.grad_checkpointing=true"],
])
def test_ablation_switches_run(tiny_cfg, overrides):
    from mma_dfer.config import _apply, parse_override

    for o in overrides:
        _apply(tiny_cfg, parse_override(o), "")
    tiny_cfg.validate()
    model = build_model(tiny_cfg).train()
    d = tiny_cfg.data
    out = model(torch.rand(2, d.num_frames, 3, d.resolution, d.resolution), torch.randn(2, 1, d.audio_frames, 128))
    out.sum().backward()
    assert out.shape == (2, 7)


def test_grad_checkpointing_gives_the_same_gradients(tiny_cfg):
    d = tiny_cfg.data
    video, audio = torch.rand(2, d.num_frames, 3, d.resolution, d.resolution), torch.randn(2, 1, d.audio_frames, 128)
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        tiny_cfg.model.grad_checkpointing = flag
        model = build_model(tiny_cfg).train()
        torch.manual_seed(1)  # same drop-path draws
        model(video, audio).sum().backward()
        grads.append([p.grad.clone() for p in model.trainable_parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _tiny_inputs(cfg, dtype=torch.float32):
    d = cfg.data
    return (torch.rand(2, d.num_frames, 3, d.resolution, d.resolution, dtype=dtype),
            torch.randn(2, 1, d.audio_frames, 128, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_whole_module_cast_to_half_trains(tiny_cfg, dtype):
    # what DeepSpeed's bf16/fp16 modes do after the model is built: every weight and input cast
    model = build_model(tiny_cfg).train().to(dtype)
    out = model(*_tiny_inputs(tiny_cfg, dtype))
    out.float().sum().backward()
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert all(p.grad is not None and p.grad.dtype == dtype for p in model.trainable_parameters())


def test_cast_frozen_runs_mixed_precision(tiny_cfg):
    # what a torch_autocast JSON gives the engine: frozen weights stored in bf16 once, fp32
    # trainable masters, the forward under autocast, the stream in bf16 through every block
    torch.manual_seed(0)
    ref = build_model(tiny_cfg).train()
    torch.manual_seed(0)
    half = build_model(tiny_cfg).train()
    half.cast_frozen(torch.bfloat16)
    assert {p.dtype for p in half.video_encoder.blocks.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in half.trainable_parameters()} == {torch.float32}
    video, audio = _tiny_inputs(tiny_cfg)
    with half.mixed_precision(video.device), torch.no_grad():
        xv, xa = half.encode(video, audio)
    assert xv.dtype == xa.dtype == torch.bfloat16  # no fp32 round trip around blocks or fusion
    torch.manual_seed(1)
    a = ref(video, audio)
    torch.manual_seed(1)
    b = half(video, audio)
    torch.testing.assert_close(a, b.float(), rtol=0.1, atol=0.05)  # bf16 rounding only
    b.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in half.trainable_parameters())
    assert all(p.grad is None for p in half.parameters() if not p.requires_grad)


def test_fp32_outputs_equal_those_before_the_speed_work(tiny_cfg):
    # logits and gradients of the tiny model on fixed inputs, written by the code at 5ff6fd7
    # (before mixed precision, fused AdamW and compilation were reworked): fp32 must not move
    from tests.conftest import ROOT

    golden = torch.load(ROOT / "tests/data/tiny_fp32_outputs.pt", weights_only=True)
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    with torch.no_grad():
        for blk in model.fusion:
            blk.video_gate.fill_(0.3)
            blk.audio_gate.fill_(-0.2)
    g = torch.Generator().manual_seed(5)
    d = tiny_cfg.data
    video = torch.rand(2, d.num_frames, 3, d.resolution, d.resolution, generator=g)
    audio = torch.randn(2, 1, d.audio_frames, d.mel_bins, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(video, audio), golden["eval"], rtol=0, atol=1e-5)
    torch.manual_seed(7)  # the same drop-path draws
    out = model.train()(video, audio)
    torch.testing.assert_close(out, golden["train"], rtol=0, atol=1e-5)
    out.logsumexp(-1).sum().backward()
    for p, ref in zip(model.trainable_parameters(), golden["grads"]):
        torch.testing.assert_close(p.grad, ref, rtol=0, atol=1e-5)


def test_unfused_attention_matches_sdpa(tiny_cfg):
    outs = []
    for fused in (True, False):
        tiny_cfg.model.fused_attn = fused
        torch.manual_seed(0)
        model = build_model(tiny_cfg).eval()
        outs.append(model(*_tiny_inputs(tiny_cfg)))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def _compiled_vs_eager(cfg, backend):
    """Logits and gradients of one training step, eager and compiled (same weights and draws)."""
    from mma_dfer.training.engine import compile_model

    torch._dynamo.reset()
    video, audio = _tiny_inputs(cfg)
    runs = []
    for mode in ("eager", "default"):
        cfg.train.compile, cfg.train.compile_backend = mode, backend
        torch.manual_seed(0)
        model = build_model(cfg).train()
        with torch.no_grad():
            for blk in model.fusion:
                blk.video_gate.fill_(0.3)
        compile_model(model, cfg.train, torch.device("cpu"), fullgraph=True)
        torch.manual_seed(1)
        out = model(video, audio)
        out.logsumexp(-1).sum().backward()
        runs.append((out.detach(), [p.grad for p in model.trainable_parameters()]))
    return runs


def test_compiled_model_is_one_graph_and_matches_eager(tiny_cfg):
    # the whole training forward in one graph (no graph breaks: fullgraph would raise), drop-path
    # and prompt updates inside it; aot_eager runs the captured graph with eager kernels, so the
    # numbers (and the drop-path draws) are the eager model's exactly
    import torch._dynamo
    from torch._dynamo.utils import counters

    counters.clear()
    tiny_cfg.model.grad_checkpointing = True
    (out_e, grads_e), (out_c, grads_c) = _compiled_vs_eager(tiny_cfg, "aot_eager")
    assert counters["stats"]["unique_graphs"] == 1
    torch.testing.assert_close(out_c, out_e, rtol=0, atol=0)
    for a, b in zip(grads_e, grads_c):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_compiled_step_is_capturable_by_cuda_graphs(tiny_cfg):
    """train.compile=reduce-overhead replays the compiled forward and backward as CUDA graphs, and
    inductor silently falls back to launching kernels for a graph it cannot capture: a host sync
    (``.item()``, an assert on a value), a data-dependent shape (``nonzero``, boolean indexing),
    a saved RNG state, a tensor constant (a CPU tensor on a GPU run) or a mutated input. Its own
    check (``get_first_incompatible_cudagraph_node``) runs here on the CPU's graphs: one forward
    and one backward graph (fullgraph: no Python branch on a tensor value), drop-path on, the same
    graphs for a second step's new inputs (no recompilation: each would be recorded again)."""
    import torch._dynamo
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    from torch._inductor.utils import get_first_incompatible_cudagraph_node

    graphs = []

    def inspect(gm, example_inputs):
        bad = get_first_incompatible_cudagraph_node(gm)
        graphs.append({"incompatible": None if bad is None else str(bad.target),
                       "constants": [n.target for n in gm.graph.nodes if n.op == "get_attr"],
                       "mutations": [str(n.target) for n in gm.graph.nodes
                                     if isinstance(n.target, torch._ops.OpOverload) and n.target._schema.is_mutable]})
        return make_boxed_func(gm.forward)

    assert tiny_cfg.model.drop_path_rate > 0 and not tiny_cfg.model.grad_checkpointing  # the shipped settings
    torch._dynamo.reset()
    model = build_model(tiny_cfg).train()
    model.compile(backend=aot_autograd(fw_compiler=inspect, bw_compiler=inspect), dynamic=False, fullgraph=True)
    for _ in range(2):
        model(*_tiny_inputs(tiny_cfg)).logsumexp(-1).sum().backward()
    assert graphs == [{"incompatible": None, "constants": [], "mutations": []}] * 2  # forward, backward


@pytest.mark.slow
def test_inductor_compiled_step_matches_eager_in_fp32(tiny_cfg):
    # the real backend's fused kernels: fp32 logits and gradients within 1e-5 of eager (drop-path
    # off: inductor draws its masks from its own generator, so they differ from eager's)
    import torch._dynamo

    tiny_cfg.model.drop_path_rate = 0.0
    (out_e, grads_e), (out_c, grads_c) = _compiled_vs_eager(tiny_cfg, "inductor")
    torch.testing.assert_close(out_c, out_e, rtol=0, atol=1e-5)
    for a, b in zip(grads_e, grads_c):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_retired_and_invalid_speed_fields_are_named():
    with pytest.raises(ConfigError, match="model.frozen_dtype' was removed: the frozen weights follow"):
        load_config(None, ["model.frozen_dtype=bfloat16"])
    with pytest.raises(ConfigError, match="model.compile_blocks' was removed: use train.compile"):
        load_config(None, ["model.compile_blocks=true"])
    with pytest.raises(ConfigError, match="train.compile='fast' is not one of"):
        load_config(None, ["train.compile=fast"])
    with pytest.raises(ConfigError, match="train.compile_backend='inductr'"):
        load_config(None, ["train.compile=default", "train.compile_backend=inductr"])


def test_activation_memory_is_measured_and_checkpointing_shrinks_it(tiny_cfg):
    from mma_dfer.perf.memory import activation_bytes, saved_tensor_bytes

    # one saved activation of a known size; the weight the matmul saves is excluded
    lin = torch.nn.Linear(16, 16, bias=False)
    x = torch.randn(4, 16, requires_grad=True)
    assert saved_tensor_bytes(lambda: lin(x), lin.parameters()) == 4 * 16 * 4
    assert saved_tensor_bytes(lambda: lin(x), []) == 4 * 16 * 4 + 16 * 16 * 4
    full = activation_bytes(tiny_cfg)
    tiny_cfg.model.grad_checkpointing = True
    ckpt = activation_bytes(tiny_cfg)
    assert full.recompute == 0 and 0 < ckpt.kept < full.kept and 0 < ckpt.recompute < full.kept
    tiny_cfg.model.grad_checkpointing = False
    assert activation_bytes(tiny_cfg, "bfloat16").kept < 0.6 * full.kept


def test_model_state_accounting_per_zero_stage():
    from mma_dfer.perf.memory import model_state_bytes

    t, f = 1000, 9000
    s0 = model_state_bytes(t, f, "bf16", 0, 8)
    assert s0 == {"weights": 2 * 10000, "gradients": 2 * 1000, "optimizer": 12 * 1000}
    assert model_state_bytes(t, f, "bf16", 1, 8)["optimizer"] == 12 * 1000 / 8
    assert model_state_bytes(t, f, "bf16", 2, 8)["gradients"] == 2 * 1000 / 8
    assert model_state_bytes(t, f, "bf16", 3, 8)["weights"] == 2 * 10000 / 8
    assert model_state_bytes(t, f, "fp32", 0, 1) == {"weights": 40000, "gradients": 4000, "optimizer": 8000}
    with pytest.raises(ValueError, match="zero_stage=4"):
        model_state_bytes(t, f, "bf16", 4, 8)


@pytest.mark.slow
@pytest.mark.parametrize("res", [112, 160, 224])
def test_full_vit_b_forward_backward(res):
    model = build_model(load_config(None, [f"data.resolution={res}"]), load_pretrained=False).train()
    out = model(torch.rand(1, 16, 3, res, res), torch.randn(1, 1, 512, 128))
    out.sum().backward()
    assert out.shape == (1, 7)
    assert model.video_encoder.pos_embed.shape[1] == 1 + (res // 16) ** 2 + 6
    assert model.audio_encoder.pos_embed.shape[1] == 1 + 32 * 8 + 6
    assert all(p.grad is not None for p in model.trainable_parameters())


def test_params_command_prints_the_trainable_line(capsys, tiny_cfg):
    from mma_dfer.cli import main
    from tests.conftest import ROOT

    assert main(["params", "--config", str(ROOT / "configs/tiny.yaml"), "--set", "model.fusion_dim=8"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    tiny_cfg.model.fusion_dim = 8
    assert out[-1] == f"trainable: {trainable(build_model(tiny_cfg))}"
    assert out[0].split() == ["part", "trainable", "frozen"]


def test_model_config_rejects_fusion_with_one_modality():
    with pytest.raises(ConfigError, match="model.fusion"):
        ModelConfig(modalities="video").validate()
