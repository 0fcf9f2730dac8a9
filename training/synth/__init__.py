"""Synthetic tool-use conversations (`nanocode data synth`).

    sources.py   code to make tasks from (corpus or a directory), what `ast` knows about it, workspaces
    episode.py   a scripted teacher running the real tools in a real workspace; seeded faults
    voice.py     SOUL.md's voice as phrase banks; the faults that break it, one rule each
    probe.py     running self-contained corpus functions in the sandbox: real results, planted bugs
    tasks.py     what the task families share
    locate, explain, write, change, bugfix, run, errors, reject, followup: one module per task family
    llm.py       the optional OpenAI-compatible generator / critic
    driver.py    the parallel run: draft, critique, revise, pair, split, decontaminate, write
"""
