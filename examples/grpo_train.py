"""A small GRPO/PPO-style training step, written the way many RL codebases write it.

Run `klaudit examples/grpo_train.py` to see what the KL terms in it do to the gradient.
"""
import torch
import torch.nn.functional as F


def per_token_logps(model, input_ids, attention_mask):
    logits = model(input_ids, attention_mask=attention_mask).logits[:, :-1]
    return F.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def grpo_loss(policy, ref_policy, batch, beta=0.04, clip=0.2):
    logps = per_token_logps(policy, batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        ref_logps = per_token_logps(ref_policy, batch["input_ids"], batch["attention_mask"])
    old_logps = batch["old_logps"]
    mask = batch["completion_mask"]

    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip)
    per_token_loss = -torch.min(ratio * batch["advantages"], clipped * batch["advantages"])

    # the "low variance" k3 estimator, differentiated as a loss
    per_token_kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
    per_token_loss = per_token_loss + beta * per_token_kl

    loss = (per_token_loss * mask).sum() / mask.sum()
    stats = {"kl": (per_token_kl * mask).sum().item() / mask.sum().item()}
    return loss, stats


@torch.no_grad()
def shaped_rewards(scores, old_logps, ref_logps, kl_coef=0.05):
    # k1 in the reward: the principled reverse-KL penalty
    kl = old_logps - ref_logps
    rewards = -kl_coef * kl
    rewards[:, -1] += scores
    return rewards
