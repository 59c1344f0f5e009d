"""Yi et al.'s released models (yiranran/Audio-driven-TalkingFace-HeadPose) as talkgraph exports:
`graphrun weights import yi FOLDER` with `0_net_G.pth`, `0_net_mem.pth`, `atcnet_lstm_general.pth`.

- `0_net_G.pth` (unetac_adain_256, a plain state dict) -> the generator of the `memory_gan`
  export. The release's encoder/decoder blocks hold their convolution twice (`conv` and
  `body.1`): one copy is kept (they are checked equal). Its AdaIN layers keep unused running
  statistics (dropped). Its MLP emits per AdaIN layer [mean -> bias, std -> weight]; the
  project's emits [gamma, beta] with scale 1 + gamma: the last layer's rows are re-ordered and
  the gamma rows' bias lowered by 1 — the same function.
- `0_net_mem.pth` (`mem_model`: the torchvision ResNet-18 + Linear under four aliases; `mem_key`,
  `mem_value`, `mem_age`, `mem_index`) -> the key encoder and memory of the same export. The
  ResNet's unused `fc` is dropped; every slot counts as filled (the release retrieves among all
  of them); `mem_index` (the training frame a slot came from) has no counterpart and is dropped.
- `atcnet_lstm_general.pth` (ATC_net(70)) -> an `audio_exp_pose` export with 64 + 6 outputs
  (Deep3DFaceRecon's expression and pose, not the project's 33 + 6: see docs/official-weights.md);
  its convolutions have no bias (BatchNorm follows): the project's biases are set to zero.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

GAN_ARCH, AUDIO_ARCH = "yi_memory_gan", "yi_audio_exp_pose"

G_RULES = [
    (r"e1\.", "generator.first."),
    (r"e(\d)\.conv\.", lambda m: f"generator.down.{int(m[1]) - 2}.conv."),
    (r"d([1-7])\.deconv\.", lambda m: f"generator.up.{int(m[1]) - 1}.conv."),
    (r"d8\.deconv\.", "generator.last.conv."),
    (r"d8\.img_reg\.0\.", "generator.colour.1."),
    (r"d8\.attention_reg\.0\.", "generator.attention.1."),
    (r"mlp\.model\.(\d)\.", r"generator.mlp.\1."),
]
G_DUPLICATE = re.compile(r"^[ed]\d\.body\.1\.")  # the same conv as e*.conv / d*.deconv
G_UNUSED = re.compile(r"^[ed]\d\.body\.\d\.running_(mean|var)$")  # AdaIN's dummy buffers
RESNET_RULES = [
    (r"ResNet18\.model\.conv1\.", "encoder.stem.0."), (r"ResNet18\.model\.bn1\.", "encoder.stem.1."),
    (r"ResNet18\.model\.layer(\d)\.(\d)\.(conv1|bn1|conv2|bn2)\.", lambda m: f"encoder.blocks.{2 * (int(m[1]) - 1) + int(m[2])}.{m[3]}."),
    (r"ResNet18\.model\.layer(\d)\.(\d)\.downsample\.(\d)\.", lambda m: f"encoder.blocks.{2 * (int(m[1]) - 1) + int(m[2])}.skip.{m[3]}."),
    (r"Linear\.", "encoder.fc."),
]
ATC_RULES = [
    (r"audio_eocder\.(\d)\.(\d)\.", lambda m: f"encoder.conv.{m[1]}.{m[2]}."),
    (r"audio_eocder_fc\.(\d)\.", r"encoder.fc.\1."),
    (r"lstm\.", "lstm."),
    (r"lstm_fc\.0\.", "head."),
]


def official_configs(memory_size: int) -> dict[str, dict[str, Any]]:
    from nodes.model_registry import model_config

    gan = {**model_config(GAN_ARCH, "paper").model_dump(), "official": True, "encoder_size": 256, "memory_size": memory_size,
           "identity": "arcface", "identity_dim": 512}
    audio = {**model_config(AUDIO_ARCH, "paper").model_dump(), "official": True, "n_expression": 64, "n_pose": 6}
    return {GAN_ARCH: gan, AUDIO_ARCH: audio}


def _primary(key: str) -> str | None:
    """The key a memory-model alias duplicates ('body.0.model.conv1.weight' -> 'ResNet18.model.conv1.weight')."""
    if key.startswith("ResNet18.body.") or key.startswith("body.0.body."):
        return None  # the torchvision children again (ResNet18.body = children of ResNet18.model): checked below
    if key.startswith("body.0."):
        return "ResNet18." + key[len("body.0."):]
    if key.startswith("body.1."):
        return "Linear." + key[len("body.1."):]
    return key


def convert_gan(g_state: dict[str, Any], mem: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from nodes.model_registry import create_model
    from nodes.weights import WeightsError, map_state, rename_by_rules

    for key in [k for k in g_state if G_DUPLICATE.match(k)]:
        prim = re.sub(r"^([ed]\d)\.body\.1\.", lambda m: m[1] + (".conv." if m[1][0] == "e" else ".deconv."), key)
        if prim not in g_state or not torch.equal(g_state[prim], g_state[key]):
            raise WeightsError(f"0_net_G.pth: {key} should duplicate {prim}")
    g = {k: v for k, v in g_state.items() if not G_DUPLICATE.match(k) and not G_UNUSED.match(k)}
    model_state = mem["mem_model"]
    memory = {}
    for key, value in model_state.items():
        if key.startswith("ResNet18.model.fc."):
            continue  # the classifier head the release never runs
        prim = _primary(key)
        if prim is None:
            continue
        if prim != key:
            if prim not in model_state or not torch.equal(model_state[prim], value):
                raise WeightsError(f"0_net_mem.pth: mem_model.{key} should duplicate {prim}")
            continue
        memory[key] = value
    with torch.device("meta"):
        model = create_model(GAN_ARCH, cfg)
    target = model.state_dict()
    # the AdaIN MLP's last layer: release [mean_l, std_l] per layer -> project [gamma_l = std_l - 1, beta_l = mean_l]
    w, b = g["mlp.model.4.weight"].clone(), g["mlp.model.4.bias"].clone()
    order, shift, o = [], [], 0
    for c in model.generator.adain_sizes:
        order += list(range(o + c, o + 2 * c)) + list(range(o, o + c))
        shift += [1.0] * c + [0.0] * c
        o += 2 * c
    if o != w.shape[0]:
        raise WeightsError(f"0_net_G.pth: the AdaIN MLP emits {w.shape[0]} values, the generator needs {o}")
    idx = torch.tensor(order)
    g["mlp.model.4.weight"], g["mlp.model.4.bias"] = w[idx], b[idx] - torch.tensor(shift, dtype=b.dtype)
    state = {rename_by_rules(G_RULES, k, f"0_net_G.pth {k}"): v for k, v in g.items()}
    state.update({rename_by_rules(RESNET_RULES, k, f"0_net_mem.pth mem_model.{k}"): v for k, v in memory.items()})
    keys = mem["mem_key"].float()
    values = mem["mem_value"].float()
    extra = {"memory.keys": keys, "memory.values": values, "memory.age": mem["mem_age"].float(),
             "memory.filled": torch.ones(len(keys), dtype=torch.bool),
             "mean_identity": F.normalize(values.mean(0), dim=0)}
    return map_state(state, lambda k: k, target, extra, what="0_net_G.pth + 0_net_mem.pth")


def convert_audio(state: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nodes.model_registry import create_model
    from nodes.weights import map_state, rename_by_rules

    with torch.device("meta"):
        model = create_model(AUDIO_ARCH, cfg)
    target = model.state_dict()
    extra = {k: torch.zeros(target[k].shape) for k in target if re.fullmatch(r"encoder\.conv\.\d\.0\.bias", k)}
    for name in ("mfcc_norm", "expression_norm", "pose_norm"):  # the release standardises nothing
        extra[f"{name}.mean"] = torch.zeros(target[f"{name}.mean"].shape)
        extra[f"{name}.std"] = torch.ones(target[f"{name}.std"].shape)
    return map_state(state, lambda k: rename_by_rules(ATC_RULES, k, f"atcnet_lstm_general.pth {k}"), target, extra,
                     what="atcnet_lstm_general.pth")


def convert(files: dict[str, Path], out_dir: Path, source_info: dict[str, Any]) -> list[Path]:
    """The memory GAN needs 0_net_G.pth and 0_net_mem.pth together; ATC_net converts on its own."""
    from nodes.weights import WeightsError, load_official, write_export

    written = []
    gan_files = [n for n in ("0_net_G.pth", "0_net_mem.pth") if n in files]
    if len(gan_files) == 1:
        other = ({"0_net_G.pth", "0_net_mem.pth"} - set(gan_files)).pop()
        raise WeightsError(f"the memory GAN needs {other} next to {files[gan_files[0]]} (generator and memory come together)")
    if gan_files:
        g = load_official(files["0_net_G.pth"], "0_net_G.pth")
        mem = load_official(files["0_net_mem.pth"], "0_net_mem.pth")
        need = ("mem_model", "mem_key", "mem_value", "mem_age")
        if any(k not in mem for k in need):
            raise WeightsError(f"{files['0_net_mem.pth']} is not Yi et al.'s memory (0_net_mem.pth): needs {', '.join(need)}, "
                               f"has {', '.join(map(str, list(mem)[:8])) or 'nothing'}")
        cfg = official_configs(int(mem["mem_key"].shape[0]))[GAN_ARCH]
        state = convert_gan(g, mem, cfg)
        del g, mem
        written.append(write_export(out_dir / "memory_gan.pt", GAN_ARCH, {"arch": GAN_ARCH, **cfg}, state, source_info,
                                    "the memory GAN: generator (0_net_G) and memory network (0_net_mem)"))
        del state
    if "atcnet_lstm_general.pth" in files:
        atc = load_official(files["atcnet_lstm_general.pth"], "atcnet_lstm_general.pth")
        cfg = official_configs(1)[AUDIO_ARCH]
        written.append(write_export(out_dir / "atcnet.pt", AUDIO_ARCH, {"arch": AUDIO_ARCH, **cfg}, convert_audio(atc, cfg), source_info,
                                    "the audio network ATC_net (atcnet_lstm_general): 64 Deep3DFaceRecon expression + 6 pose outputs"))
    return written
