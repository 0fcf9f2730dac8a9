"""Synthetic tool-use conversations (`nanocode data synth`).

    sources.py    code to make tasks from (corpus or a directory), what `ast` knows about it, workspaces
    episode.py    a scripted teacher running the real tools in a real workspace; seeded faults
    voice.py      SOUL.md's voice as phrase banks; the faults that break it, one rule each
    phrasing.py   requests as people type them: templates x slots x surface transforms, held-out patterns
    requests/     the request templates, by intent
    probe.py      running self-contained corpus functions in the sandbox: real results, planted bugs
    programs.py   small programs from a description, with their exact output (the create family)
    textfiles.py  notes, configs, CSVs, READMEs: the non-code files of a project
    tasks.py      what the task families share; checks.py: did a task get done (workspace, calls, answer)
    locate, explain, write, change, bugfix, run, errors, reject, followup, read, explore, count, usages,
    testing, create, docstring, delete, renames, chat, recover: one module per task family
    replay.py     a family's teacher through the real agent loop, scored by its checker (tests, eval)
    llm.py        the optional OpenAI-compatible generator / critic
    driver.py     the parallel run: draft, critique, revise, pair, split, decontaminate, write, measure
"""
