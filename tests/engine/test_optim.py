"""Parameter groups: new vs pretrained learning rates, layer-wise decay, weight decay, schedules."""

from __future__ import annotations

import pytest
import torch
from tinyjob import tiny_bert
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from tunekit.config import TrainingConfig
from tunekit.engine.optim import (
    block_of,
    build_optimizer,
    build_scheduler,
    count_blocks,
    is_new_parameter,
    plan_parameters,
)


def test_block_indices_across_architectures():
    assert block_of("bert.encoder.layer.3.attention.self.query.weight") == 3
    assert block_of("model.layers.11.self_attn.q_proj.lora_A.weight") == 11
    assert block_of("transformer.h.0.attn.c_attn.weight") == 0
    assert block_of("bert.embeddings.word_embeddings.weight") is None
    assert count_blocks(["a.layer.0.x", "a.layer.5.y", "emb"]) == 6


def test_new_parameter_rule():
    heads, injected = ["classifier"], ["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.1.output"]
    assert is_new_parameter("classifier.weight", heads, injected)
    assert is_new_parameter("bert.encoder.layer.0.attention.self.query.lora_A.weight", heads, injected)
    assert not is_new_parameter("bert.encoder.layer.0.attention.self.query.base_layer.weight", heads, injected)
    assert not is_new_parameter("bert.encoder.layer.0.attention.self.query.weight", heads, injected)
    assert not is_new_parameter("bert.encoder.layer.2.output.dense.weight", heads, injected)
    assert is_new_parameter("bert.encoder.layer.1.output.adapter.down.weight", heads, injected)
    # what the method says wins
    assert is_new_parameter("bert.pooler.dense.weight", heads, injected, new_parameters=["bert.pooler.dense.weight"])


def test_differential_and_layerwise_learning_rates_on_bert():
    model = tiny_bert()  # 2 blocks
    tc = TrainingConfig(lr=1e-3, backbone_lr=1e-4, layer_decay=0.5, weight_decay=0.01)
    plan = {p.name: p for p in plan_parameters(model, tc, head_modules=["classifier"])}
    assert plan["classifier.weight"].lr == 1e-3 and plan["classifier.weight"].new
    assert plan["bert.encoder.layer.1.attention.self.query.weight"].lr == pytest.approx(1e-4)
    assert plan["bert.encoder.layer.0.attention.self.query.weight"].lr == pytest.approx(5e-5)
    assert plan["bert.embeddings.word_embeddings.weight"].lr == pytest.approx(2.5e-5)  # lowest: decay ** L
    assert plan["bert.pooler.dense.weight"].lr == pytest.approx(1e-4)  # above the blocks
    assert plan["bert.encoder.layer.0.attention.self.query.bias"].weight_decay == 0.0
    assert plan["bert.embeddings.LayerNorm.weight"].weight_decay == 0.0
    assert plan["bert.encoder.layer.0.attention.self.query.weight"].weight_decay == 0.01
    lrs = sorted({p.lr for p in plan.values()})
    assert lrs == pytest.approx([2.5e-5, 5e-5, 1e-4, 1e-3])


class Wrapped(torch.nn.Module):
    """A LoRA-like wrapper: the pretrained layer kept as ``base_layer`` plus two new matrices."""

    def __init__(self, base):
        super().__init__()
        self.base_layer = base
        self.lora_A = torch.nn.Linear(base.in_features, 2, bias=False)
        self.lora_B = torch.nn.Linear(2, base.out_features, bias=False)

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(x))


def test_new_parameters_found_by_comparing_with_the_plain_architecture():
    model = tiny_bert()
    attn = model.bert.encoder.layer[1].attention.self
    attn.query = Wrapped(attn.query)
    for name, p in model.named_parameters():  # LoRA-like on block 1 + block 0 unfrozen (like `freeze`)
        p.requires_grad = "lora_" in name or name.startswith(("classifier", "bert.encoder.layer.0."))
    tc = TrainingConfig(lr=1e-3, backbone_lr=1e-5)
    # `injected` deliberately names block 0 too: the architecture comparison must not call its weights new
    plan = {p.name: p for p in plan_parameters(model, tc, ["classifier"],
                                               ["bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.0"])}
    assert plan["bert.encoder.layer.1.attention.self.query.lora_A.weight"].lr == 1e-3
    assert plan["bert.encoder.layer.0.attention.self.query.weight"].lr == 1e-5
    assert plan["classifier.weight"].lr == 1e-3
    assert "bert.encoder.layer.1.attention.self.query.base_layer.weight" not in plan  # frozen


def test_the_methods_own_list_of_new_parameters_wins():
    model = tiny_bert()
    tc = TrainingConfig(lr=1e-3, backbone_lr=1e-5)
    plan = {p.name: p for p in plan_parameters(model, tc, [], [], new_parameters=["bert.pooler.dense.weight"])}
    assert plan["bert.pooler.dense.weight"].lr == 1e-3 and plan["bert.pooler.dense.bias"].lr == 1e-5
    assert plan["classifier.weight"].lr == 1e-5  # not a head here, not listed


def test_frozen_parameters_are_left_out_and_groups_cover_each_trainable_once():
    model = tiny_bert()
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(("classifier", "bert.encoder.layer.1."))
    tc = TrainingConfig(lr=1e-3, backbone_lr=1e-4)
    plan = plan_parameters(model, tc, head_modules=["classifier"])
    opt = build_optimizer(model, plan)
    in_opt = [p for g in opt.param_groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(in_opt) == len(trainable) == len({id(p) for p in in_opt})
    assert {g["lr"] for g in opt.param_groups} == {1e-3, 1e-4}


def test_embeddings_lowest_on_gpt2_and_llama():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=3, n_head=2, vocab_size=64, n_positions=32))
    plan = {p.name: p for p in plan_parameters(gpt2, TrainingConfig(lr=1.0, layer_decay=0.5))}
    assert plan["transformer.wte.weight"].lr == pytest.approx(0.125)
    assert plan["transformer.h.0.attn.c_attn.weight"].lr == pytest.approx(0.25)
    assert plan["transformer.h.2.attn.c_attn.weight"].lr == pytest.approx(1.0)
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=64,
                                         tie_word_embeddings=True))
    plan = {p.name: p for p in plan_parameters(llama, TrainingConfig(lr=1.0, layer_decay=0.5))}
    assert plan["model.embed_tokens.weight"].lr == pytest.approx(0.25)
    assert plan["model.norm.weight"].lr == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["linear", "cosine", "constant"])
def test_schedules_warm_up_then_follow_their_shape(name):
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1.0}])
    sched = build_scheduler(opt, TrainingConfig(lr=1.0, scheduler=name, warmup_ratio=0.2), total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(0.5) and lrs[2] == pytest.approx(1.0)
    if name == "constant":
        assert lrs[2:] == pytest.approx([1.0] * 8)
    else:
        assert all(a > b for a, b in zip(lrs[2:], lrs[3:], strict=False))
        if name == "cosine":
            assert lrs[6] == pytest.approx(0.5)
