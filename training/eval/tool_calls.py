"""Tool-call validity of greedy replies: SFT's eval during training (training/sft.py) and the speedrun's ship
gate after DPO (training/pipeline.py), one measurement for both."""


def tool_call_validity(sampler, conversations: list[dict], tok, max_tokens: int) -> dict:
    """Greedy replies to held-out requests, up to the first tool call or the end of the turn, parsed by
    nanocode/template.py (the agent's parser). tool_call_validity: the share that are well formed (no
    unknown tool, missing argument, stray special token, ...); a reply the token budget cut off counts as
    neither. call_rate: the share that make a well-formed tool call."""
    from nanocode.template import ToolCallError, ToolCallPart, parse_assistant, render_prompt, stop_ids
    prompts = [render_prompt(c["messages"][:1], tok) for c in conversations]
    prompts = [p for p in prompts if len(p) + max_tokens < sampler.config.seq_len]
    if not prompts:
        return {}
    outs = sampler.generate_batch(prompts, max_tokens, temperature=0.0, stop=stop_ids(tok))
    ok = calls = truncated = 0
    for ids in outs:
        try:
            parts, _ = parse_assistant(ids, tok, allow_results=False)
        except ToolCallError as e:
            truncated += e.kind == "truncated"
            continue
        ok += 1
        calls += any(isinstance(p, ToolCallPart) for p in parts)
    judged = len(outs) - truncated
    return {"sampled": len(outs), "truncated": truncated, "call_rate": calls / len(outs),
            "tool_call_validity": ok / judged if judged else None}

