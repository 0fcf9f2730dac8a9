"""The request templates, by intent (grammar and slots: phrasing.py). One line is one phrasing pattern;
a fifth of each intent's lines are held out of training for the generalisation eval (phrasing.HOLDOUT).

The first template of an intent is its plainest phrasing and is never held out.

Slots: {target} the code name as a noun phrase ("`f`", "the function f"), {name} the bare styled name,
{where} " in FILE" or nothing, {file}, {new} a new name, {p} a parameter, {pd} `param=default`, {value},
{old}, {n}, {a}/{b} line numbers, {call} a call, {want}/{got} results, {sig} a signature, {what} what
a program does ("prints ..."), {task} the same as an infinitive ("print ..."), {code}/{old_code}/
{new_code} code snippets, {dir} a directory. A template is used only when every slot it names is given.
"""
from training.synth.requests import change, look, talk

BANK: dict[str, list[str]] = {**look.BANK, **change.BANK, **talk.BANK}
