"""The critic (value model) of PPO: a token-level value `V(s_t)` for every completion token.

`V_t` is read from the backbone's hidden state at the position *before* completion token `t` (the state in
which token `t` is chosen), the same positions whose logits give the token's log-prob, through a scalar
head. Three ways to build it (`Critic.build`):

- `value_model=None`, full fine-tuning: a copy of the policy's weights with a fresh head (2x the policy's
  weights, gradients and optimizer state).
- `value_model=None`, PEFT policy: a second LoRA adapter (`"critic"`, same LoRA config) on the policy's own
  base, plus the head. A QLoRA run loads one 4-bit base; the critic costs one more adapter, its optimizer state
  and the activations of its forward/backward.
- `value_model` given (a model or a path/hub id): its backbone; a 1-label `score`/`classifier` head
  (sequence or token classification models, e.g. a reward model) is reused, otherwise a fresh head. With a PEFT
  policy the value model gets its own copy of the LoRA config.

Loss: the clipped value loss of PPO for LLMs (Ouyang et al. 2022, https://huggingface.co/papers/2203.02155;
Schulman et al. 2017, https://huggingface.co/papers/1707.06347). The critic has its own AdamW optimizer and
learning rate; its gradients are averaged over processes before each step.
"""

from __future__ import annotations

import contextlib
import copy
import os

import torch
from torch import Tensor, nn

from trl_plus.qlora import use_exact_4bit_matmul

ADAPTER = "critic"
HEAD_FILE = "value_head.safetensors"
STATE_FILE = "critic_state.pt"  # in checkpoints: exact trainable tensors + optimizer state
TOKEN_MODELS = ("ForCausalLM", "ForSequenceClassification", "ForTokenClassification")


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
                       cliprange_value: float | None) -> tuple[Tensor, Tensor]:
    """`0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)`, mean over valid tokens.

    Args: all `(B, T)`; `cliprange_value=None` disables the clipped term.
    Returns: `(loss, clip_fraction)`, scalars; clip_fraction is the share of valid tokens where the clipped
    term is the larger one (the gradient is cut there).
    """
    valid = mask.bool()
    n = valid.sum().clamp(min=1)
    unclipped = (values - returns).square()
    if cliprange_value is None:
        return 0.5 * torch.where(valid, unclipped, 0.0).sum() / n, values.new_zeros(())
    clipped_v = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    clipped = (clipped_v - returns).square()
    loss = 0.5 * torch.where(valid, torch.maximum(unclipped, clipped), 0.0).sum() / n
    frac = (valid & (clipped > unclipped)).sum() / n
    return loss, frac


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor, reducer=None) -> Tensor:
    """`1 - Var(R - V) / Var(R)` over the valid tokens of all processes (with a cross-process sum `reducer`).

    1 is a perfect critic, 0 one that predicts the mean, negative worse than that. NaN-free: 0 when Var(R) is 0.
    """
    valid = mask.bool()
    err = torch.where(valid, returns - values, 0.0).double()
    ret = torch.where(valid, returns, 0.0).double()
    sums = torch.stack([valid.sum().double(), ret.sum(), ret.square().sum(), err.sum(), err.square().sum()])
    n, r1, r2, e1, e2 = (sums if reducer is None else reducer(sums)).unbind()
    n = n.clamp(min=1)
    var_r, var_e = r2 / n - (r1 / n) ** 2, e2 / n - (e1 / n) ** 2
    return torch.where(var_r > 1e-12, 1 - var_e / var_r.clamp(min=1e-12), torch.zeros_like(var_r)).float()


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _backbone(model) -> nn.Module:
    """The transformer without its LM/classification head (transformers' `base_model`)."""
    inner = model.get_base_model() if _is_peft(model) else model
    return inner.base_model


def check_token_model(model, name: str = "value_model") -> None:
    """TypeError unless `model` is a decoder producing one hidden state per token."""
    inner = model.get_base_model() if _is_peft(model) else model
    cls = type(inner).__name__
    config = getattr(inner, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False) or not cls.endswith(TOKEN_MODELS):
        raise TypeError(f"{name} is a {cls}, but the critic needs a decoder-only causal or token model (a class ending "
                        f"in {', '.join(TOKEN_MODELS)}), whose hidden states give one value per token: pass e.g. an "
                        "AutoModelForCausalLM or AutoModelForSequenceClassification(num_labels=1), or None to copy "
                        "the policy.")


def load_value_model(path: str, model_init_kwargs: dict | None = None):
    """Load `path` (local folder or hub id) as a causal LM, or as a 1-label sequence classifier (reward models)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs = dict(model_init_kwargs or {})
    archs = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
    if any(a.endswith("ForCausalLM") for a in archs):
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if any(a.endswith(("ForSequenceClassification", "ForTokenClassification")) for a in archs):
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **kwargs)
    raise TypeError(f"value_model {path!r} is a {', '.join(archs) or 'model of unknown architecture'}, but the critic "
                    f"needs a decoder-only causal or token model ({', '.join(TOKEN_MODELS)}); pass such a model, or "
                    "None to copy the policy.")


def check_same_vocabulary(policy, value_model, policy_tokenizer, value_path: str | None) -> None:
    """ValueError when the critic would read the policy's token ids with another vocabulary."""
    p_vocab = policy.get_input_embeddings().num_embeddings
    v_vocab = value_model.get_input_embeddings().num_embeddings
    problem = None
    if p_vocab != v_vocab:
        problem = f"its embedding has {v_vocab} rows, the policy's {p_vocab}"
    elif value_path is not None and os.path.exists(os.path.join(value_path, "tokenizer_config.json")):
        from transformers import AutoTokenizer

        if AutoTokenizer.from_pretrained(value_path).get_vocab() != policy_tokenizer.get_vocab():
            problem = "its tokenizer maps tokens to other ids than the policy's"
    if problem:
        raise ValueError(f"The value model does not share the policy's vocabulary ({problem}), so it would read the "
                         "policy's token ids as other tokens. Use a critic trained with the policy's tokenizer, or "
                         "value_model=None to start the critic from the policy's weights.")


class Critic(nn.Module):
    """Backbone + scalar head. `values(...)` -> `(B, T)`; `loss_and_backward`, `step` train it."""

    def __init__(self, model: nn.Module, head: nn.Linear, adapter_of: nn.Module | None = None):
        super().__init__()
        self.model = model if adapter_of is None else None  # a shared PEFT base is not registered twice
        object.__setattr__(self, "_shared", adapter_of)  # not a submodule: the policy owns it
        self.head = head.float()
        self.optimizer: torch.optim.Optimizer | None = None

    @classmethod
    def build(cls, policy, value_model=None, *, seed: int = 0, tokenizer=None, model_init_kwargs=None):
        path = value_model if isinstance(value_model, str) else None
        if path is not None:
            value_model = load_value_model(path, model_init_kwargs)
        if value_model is not None:
            check_token_model(value_model)
            check_same_vocabulary(policy, value_model, tokenizer, path)
        with torch.random.fork_rng(devices=[]):  # a new head or adapter must not move the run's RNG
            torch.manual_seed(seed)
            if value_model is None and _is_peft(policy):
                config = copy.deepcopy(policy.peft_config[policy.active_adapter])
                policy.add_adapter(ADAPTER, config)  # inactive (frozen) until `active()` switches to it
                critic = cls(policy, cls._new_head(policy), adapter_of=policy)
            else:
                model = copy.deepcopy(policy) if value_model is None else value_model
                if value_model is not None and _is_peft(policy):
                    from peft import get_peft_model

                    model = get_peft_model(model, copy.deepcopy(policy.peft_config[policy.active_adapter]))
                critic = cls(model, cls._reused_head(model) or cls._new_head(model))
        if path is not None and os.path.isfile(os.path.join(path, HEAD_FILE)):
            from safetensors.torch import load_file

            critic.head.load_state_dict(load_file(os.path.join(path, HEAD_FILE)))
        critic.head.to(policy.device)
        if critic.model is not None and not getattr(critic.model, "is_quantized", False):
            critic.model.to(policy.device)
        use_exact_4bit_matmul(critic.model)  # a 4-bit value model trains like the policy (trl_plus.qlora)
        return critic

    @staticmethod
    def _new_head(model) -> nn.Linear:
        hidden = _backbone(model).config.get_text_config().hidden_size
        head = nn.Linear(hidden, 1)
        nn.init.normal_(head.weight, std=1.0 / (hidden + 1))  # as OpenRLHF's value head
        nn.init.zeros_(head.bias)
        return head

    @staticmethod
    def _reused_head(model) -> nn.Linear | None:
        inner = model.get_base_model() if _is_peft(model) else model
        for name in ("score", "classifier"):
            head = getattr(inner, name, None)
            if isinstance(head, nn.Linear) and head.out_features == 1:
                if head.bias is None:  # a reward model's score head has no bias; the critic's gets one
                    new = nn.Linear(head.in_features, 1)
                    new.weight.data.copy_(head.weight.data)
                    nn.init.zeros_(new.bias)
                    return new
                return copy.deepcopy(head)
        return None

    # ----- parameters and adapter switching -----------------------------------------------------------------

    @property
    def backbone_owner(self) -> nn.Module:
        return self._shared if self._shared is not None else self.model

    def named_trainable(self) -> list[tuple[str, nn.Parameter]]:
        """The critic's own trainable parameters, in a fixed order."""
        if self._shared is not None:
            own = [(n, p) for n, p in self._shared.named_parameters() if f".{ADAPTER}." in n]
        else:
            own = [(f"model.{n}", p) for n, p in self.model.named_parameters() if p.requires_grad]
        return own + [(f"head.{n}", p) for n, p in self.head.named_parameters()]

    @contextlib.contextmanager
    def active(self):
        """With a shared PEFT base, make the critic's adapter the active (and only trainable) one.

        PEFT freezes inactive adapters, so forward *and* backward (which may recompute activations under
        gradient checkpointing) must run inside this context.
        """
        if self._shared is None:
            yield
            return
        policy_adapter = self._shared.active_adapter
        self._shared.set_adapter(ADAPTER)
        try:
            yield
        finally:
            self._shared.set_adapter(policy_adapter)

    # ----- values, loss, optimizer ---------------------------------------------------------------------------

    def values(self, input_ids: Tensor, attention_mask: Tensor, n_completion: int, batch_size: int | None = None):
        """`(B, n_completion)` values of the last `n_completion` tokens' states (float32). Call inside `active()`."""
        batch_size = batch_size or input_ids.size(0)
        backbone = _backbone(self.backbone_owner)
        chunks = []
        for i in range(0, input_ids.size(0), batch_size):
            hidden = backbone(input_ids=input_ids[i:i + batch_size],
                              attention_mask=attention_mask[i:i + batch_size], use_cache=False).last_hidden_state
            chunks.append(self.head(hidden[:, -n_completion - 1:-1].float()).squeeze(-1))
        return torch.cat(chunks)

    def make_optimizer(self, args, lr: float) -> None:
        params = [p for _, p in self.named_trainable()]
        self.optimizer = torch.optim.AdamW(params, lr=lr, betas=(args.adam_beta1, args.adam_beta2),
                                           eps=args.adam_epsilon, weight_decay=args.weight_decay)

    def step(self, accelerator, max_grad_norm: float) -> float:
        """Average gradients over processes, clip, step, zero. Returns the gradient norm before clipping."""
        params = [p for _, p in self.named_trainable()]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if accelerator.num_processes > 1:
            flat = accelerator.reduce(torch.cat([p.grad.flatten() for p in params]), reduction="mean")
            for p, g in zip(params, flat.split([p.numel() for p in params])):
                p.grad.copy_(g.view_as(p))
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    # ----- saving -----------------------------------------------------------------------------------------------

    def save(self, folder: str) -> None:
        """User-facing critic: the model (or the critic's LoRA adapter) and `value_head.safetensors`."""
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        if self._shared is not None:
            from peft.utils import get_peft_model_state_dict

            state = get_peft_model_state_dict(self._shared, adapter_name=ADAPTER)
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
                      os.path.join(folder, "adapter_model.safetensors"))
            self._shared.peft_config[ADAPTER].save_pretrained(folder)
        else:
            self.model.save_pretrained(folder)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  os.path.join(folder, HEAD_FILE))

    def training_state(self) -> dict:
        return {"params": {n: p.detach().cpu().clone() for n, p in self.named_trainable()},
                "optimizer": self.optimizer.state_dict()}

    def load_training_state(self, state: dict) -> None:
        params = dict(self.named_trainable())
        if state["params"].keys() != params.keys():
            raise ValueError("The checkpoint's critic does not match this run's critic (other parameters): resume "
                             "with the same value_model and PEFT settings as the run that saved it.")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state["params"][name])
        self.optimizer.load_state_dict(state["optimizer"])
