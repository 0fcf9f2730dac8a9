"""A procedural bank of small programs: a description as a user would give it, the program, and the exact
output it must print, computed here independently of running it (the create family runs the program
through Bash and skips the task if the two disagree, so a wrong entry never becomes training data).

    program(rng) -> Program(what, task, stem, source, expected, data)

`what` is third person ("prints the first 10 primes"), `task` the infinitive ("print the first 10 primes"),
both with the grammar of phrasing.expand, so one kind gives many descriptions; `data` holds input files
the program reads (a numbers file, a text file). Programs are written in a few styles (a main function
or not, comprehensions or loops) so the model does not learn one shape for every script.
"""
import math
import random
from dataclasses import dataclass, field

from training.synth.phrasing import expand


@dataclass(frozen=True)
class Program:
    what: str
    task: str
    stem: str                 # a file name stem that fits: primes -> primes.py
    source: str
    expected: str             # stdout, without the trailing newline
    data: dict = field(default_factory=dict)


WORDS = ["banana", "level", "python", "racecar", "kayak", "window", "rotor", "planet", "civic", "garden",
         "noon", "stats", "pencil", "madam", "orange", "refer"]
PHRASES = ["the quick brown fox jumps over the lazy dog", "hello world from nanocode", "to be or not to be",
           "a stitch in time saves nine", "practice makes perfect", "keep it simple and small",
           "all that glitters is not gold", "every cloud has a silver lining"]
NAMES = ["ada", "grace", "linus", "guido", "barbara", "ken", "dennis", "margaret"]


def _main(body: str, rng: random.Random) -> str:
    """The body at top level, or in a main() called under the __name__ guard."""
    if rng.random() < 0.5:
        return body
    inner = "".join("    " + line + "\n" if line else "\n" for line in body.rstrip("\n").split("\n"))
    return f"def main():\n{inner}\n\nif __name__ == \"__main__\":\n    main()\n"


def _say(rng: random.Random, verb_phrase: str) -> tuple[str, str]:
    """(third person, infinitive) of '<print|output> ...' written with `{s}` where the 3rd-person s goes."""
    text = " ".join(expand(verb_phrase, rng).split())
    return text.replace("{s}", "s").replace("{es}", "es"), text.replace("{s}", "").replace("{es}", "")


def hello(rng):
    name = rng.choice(NAMES + ["world"])
    what, task = _say(rng, f"print{{s}} <hello {name}|'hello, {name}!'|a greeting to {name}>")
    text = f"hello, {name}!" if "'" in what or "greeting" in what else f"hello {name}"
    return Program(what, task, "hello", _main(f"print({text!r})\n", rng), text)


def sum_range(rng):
    n = rng.randint(10, 1000)
    what, task = _say(rng, f"<print{{s}}|output{{s}}|compute{{s}} and print{{s}}> the sum of <the numbers|the integers|> "
                           f"<from 1 to {n}|1 through {n}|up to {n}>")
    src = rng.choice([f"print(sum(range(1, {n + 1})))\n",
                      f"total = 0\nfor i in range(1, {n + 1}):\n    total += i\nprint(total)\n"])
    return Program(what, task, "sum_numbers", _main(src, rng), str(n * (n + 1) // 2))


def factorial(rng):
    n = rng.randint(5, 20)
    what, task = _say(rng, f"<print{{s}}|calculate{{s}}|compute{{s}}> <the factorial of {n}|{n}!|{n} factorial>")
    src = rng.choice(["import math\n\nprint(math.factorial({n}))\n",
                      "result = 1\nfor k in range(2, {n} + 1):\n    result *= k\nprint(result)\n"]).format(n=n)
    return Program(what, task, "factorial", _main(src, rng), str(math.factorial(n)))


def fibonacci(rng):
    n = rng.randint(5, 20)
    what, task = _say(rng, f"print{{s}} the first {n} fibonacci numbers[ on one line][, starting from 0]")
    a, b, out = 0, 1, []
    for _ in range(n):
        out.append(a)
        a, b = b, a + b
    src = f"a, b = 0, 1\nnums = []\nfor _ in range({n}):\n    nums.append(a)\n    a, b = b, a + b\nprint(*nums)\n"
    return Program(what, task, "fibonacci", _main(src, rng), " ".join(map(str, out)))


def primes(rng):
    n = rng.randint(10, 120)
    what, task = _say(rng, f"<print{{s}}|list{{s}}> <the|all the> prime numbers <below|less than> {n}")
    ps = [k for k in range(2, n) if all(k % d for d in range(2, int(k ** 0.5) + 1))]
    src = (f"def is_prime(k):\n    if k < 2:\n        return False\n    for d in range(2, int(k ** 0.5) + 1):\n"
           f"        if k % d == 0:\n            return False\n    return True\n\n\n"
           f"print(*[k for k in range({n}) if is_prime(k)])\n")
    return Program(what, task, "primes", src, " ".join(map(str, ps)))


def fizzbuzz(rng):
    n = rng.randint(10, 30)
    what, task = _say(rng, f"<print{{s}}|do{{es}}> fizzbuzz <from 1 to {n}|up to {n}|for 1..{n}>")
    out = ["FizzBuzz" if k % 15 == 0 else "Fizz" if k % 3 == 0 else "Buzz" if k % 5 == 0 else str(k)
           for k in range(1, n + 1)]
    src = (f"for i in range(1, {n + 1}):\n    if i % 15 == 0:\n        print(\"FizzBuzz\")\n    elif i % 3 == 0:\n"
           f"        print(\"Fizz\")\n    elif i % 5 == 0:\n        print(\"Buzz\")\n    else:\n        print(i)\n")
    return Program(what, task, "fizzbuzz", _main(src, rng), "\n".join(out))


def times_table(rng):
    k, m = rng.randint(2, 12), rng.randint(5, 12)
    what, task = _say(rng, f"print{{s}} the <multiplication|times> table of {k} <up to|from 1 to> {m}")
    out = [f"{k} x {i} = {k * i}" for i in range(1, m + 1)]
    src = f"for i in range(1, {m + 1}):\n    print(f\"{k} x {{i}} = {{{k} * i}}\")\n"
    return Program(what, task, "times_table", _main(src, rng), "\n".join(out))


def reverse_word(rng):
    w = rng.choice(WORDS + PHRASES[:3])
    what, task = _say(rng, f"print{{s}} <'{w}' reversed|the string '{w}' backwards|'{w}' spelled backwards>")
    return Program(what, task, "reverse", _main(f"print({w!r}[::-1])\n", rng), w[::-1])


def vowels(rng):
    p = rng.choice(PHRASES)
    what, task = _say(rng, f"count{{s}} the vowels in '{p}' and print{{s}} the count")
    return Program(what, task, "vowels", _main(f"text = {p!r}\nprint(sum(1 for c in text if c in \"aeiou\"))\n", rng),
                   str(sum(c in "aeiou" for c in p)))


def celsius(rng):
    lo, step = rng.choice([0, -10, 10]), rng.choice([10, 20, 25])
    hi = lo + step * rng.randint(3, 6)
    what, task = _say(rng, f"print{{s}} a celsius to fahrenheit table from {lo} to {hi} in steps of {step}")
    out = [f"{c} {c * 9 / 5 + 32:.1f}" for c in range(lo, hi + 1, step)]
    src = f"for c in range({lo}, {hi + 1}, {step}):\n    print(c, f\"{{c * 9 / 5 + 32:.1f}}\")\n"
    return Program(what, task, "temperatures", _main(src, rng), "\n".join(out))


def word_count(rng):
    p = rng.choice(PHRASES)
    what, task = _say(rng, f"<print{{s}}|count{{s}}> <how many words are in|the number of words in> '{p}'")
    return Program(what, task, "word_count", _main(f"print(len({p!r}.split()))\n", rng), str(len(p.split())))


def word_freq(rng):
    words = rng.choices(["red", "blue", "green", "gold"], k=rng.randint(6, 10))
    p = " ".join(words)
    what, task = _say(rng, f"count{{s}} how often each word appears in '{p}' and print{{s}} 'word count' lines "
                           f"in alphabetical order")
    counts = {w: words.count(w) for w in sorted(set(words))}
    src = (f"from collections import Counter\n\ncounts = Counter({p!r}.split())\nfor word in sorted(counts):\n"
           f"    print(word, counts[word])\n")
    return Program(what, task, "word_freq", _main(src, rng), "\n".join(f"{w} {c}" for w, c in counts.items()))


def palindromes(rng):
    ws = rng.sample(WORDS, 5)
    what, task = _say(rng, f"print{{s}} which of these words are palindromes: {', '.join(ws)}")
    src = f"words = {ws!r}\nfor w in words:\n    if w == w[::-1]:\n        print(w)\n"
    return Program(what, task, "palindromes", _main(src, rng), "\n".join(w for w in ws if w == w[::-1]))


def sort_numbers(rng):
    xs = rng.sample(range(1, 100), rng.randint(5, 9))
    desc = rng.random() < 0.4
    order = "from largest to smallest" if desc else "<in ascending order|from smallest to largest>"
    what, task = _say(rng, f"sort{{s}} the numbers {', '.join(map(str, xs))} and print{{s}} them {order}")
    src = f"numbers = {xs!r}\nprint(*sorted(numbers{', reverse=True' if desc else ''}))\n"
    return Program(what, task, "sort_numbers", _main(src, rng), " ".join(map(str, sorted(xs, reverse=desc))))


def stats(rng):
    xs = [rng.randint(1, 50) for _ in range(rng.randint(4, 8))]
    what, task = _say(rng, f"print{{s}} the <min, max and mean|smallest, largest and average> of "
                           f"{', '.join(map(str, xs))}[, one per line]")
    mean = sum(xs) / len(xs)
    src = f"values = {xs!r}\nprint(min(values))\nprint(max(values))\nprint(round(sum(values) / len(values), 2))\n"
    return Program(what, task, "stats", _main(src, rng), f"{min(xs)}\n{max(xs)}\n{round(mean, 2)}")


def triangle(rng):
    n = rng.randint(3, 7)
    ch = rng.choice(["*", "#"])
    what, task = _say(rng, f"print{{s}} a <right |>triangle of '{ch}' with {n} rows")
    src = f"for i in range(1, {n + 1}):\n    print({ch!r} * i)\n"
    return Program(what, task, "triangle", _main(src, rng), "\n".join(ch * i for i in range(1, n + 1)))


def countdown(rng):
    n = rng.randint(3, 12)
    what, task = _say(rng, f"count{{s}} down from {n} to 1[ and then print{{s}} 'liftoff']")
    tail = "liftoff" in what
    src = f"for i in range({n}, 0, -1):\n    print(i)\n" + ("print(\"liftoff\")\n" if tail else "")
    return Program(what, task, "countdown", _main(src, rng),
                   "\n".join(map(str, range(n, 0, -1))) + ("\nliftoff" if tail else ""))


def gcd(rng):
    a, b = rng.randint(12, 500), rng.randint(12, 500)
    what, task = _say(rng, f"<print{{s}}|find{{s}} and print{{s}}> the greatest common divisor of {a} and {b}")
    src = rng.choice([f"import math\n\nprint(math.gcd({a}, {b}))\n",
                      f"a, b = {a}, {b}\nwhile b:\n    a, b = b, a % b\nprint(a)\n"])
    return Program(what, task, "gcd", _main(src, rng), str(math.gcd(a, b)))


def digit_sum(rng):
    n = rng.randint(1000, 10 ** 9)
    what, task = _say(rng, f"print{{s}} the sum of the digits of {n}")
    return Program(what, task, "digit_sum", _main(f"print(sum(int(d) for d in str({n})))\n", rng),
                   str(sum(map(int, str(n)))))


def binary(rng):
    n = rng.randint(4, 16)
    what, task = _say(rng, f"print{{s}} the numbers 1 to {n} in binary, one per line")
    src = f"for i in range(1, {n + 1}):\n    print(bin(i)[2:])\n"
    return Program(what, task, "binary", _main(src, rng), "\n".join(bin(i)[2:] for i in range(1, n + 1)))


def collatz(rng):
    n = rng.randint(3, 60)
    what, task = _say(rng, f"print{{s}} the collatz sequence starting at {n}[, all on one line]")
    seq, k = [n], n
    while k != 1:
        k = k // 2 if k % 2 == 0 else 3 * k + 1
        seq.append(k)
    src = f"n = {n}\nseq = [n]\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    seq.append(n)\nprint(*seq)\n"
    return Program(what, task, "collatz", _main(src, rng), " ".join(map(str, seq)))


def caesar(rng):
    w, k = rng.choice(WORDS), rng.randint(1, 25)
    what, task = _say(rng, f"print{{s}} '{w}' with a caesar shift of {k}")
    enc = "".join(chr((ord(c) - 97 + k) % 26 + 97) for c in w)
    src = f"word = {w!r}\nprint(\"\".join(chr((ord(c) - 97 + {k}) % 26 + 97) for c in word))\n"
    return Program(what, task, "caesar", _main(src, rng), enc)


def title_case(rng):
    p = rng.choice(PHRASES)
    what, task = _say(rng, f"print{{s}} '{p}' in title case")
    return Program(what, task, "title", _main(f"print({p!r}.title())\n", rng), p.title())


def leap_years(rng):
    a = rng.choice([1896, 1990, 2000, 2010])
    b = a + rng.randint(10, 40)
    what, task = _say(rng, f"print{{s}} the leap years between {a} and {b}[ inclusive]")
    ys = [y for y in range(a, b + 1) if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)]
    src = (f"def is_leap(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n\n\n"
           f"print(*[y for y in range({a}, {b + 1}) if is_leap(y)])\n")
    return Program(what, task, "leap_years", src, " ".join(map(str, ys)))


def squares(rng):
    n = rng.randint(5, 15)
    what, task = _say(rng, f"print{{s}} the squares of 1 to {n}[ on one line][, separated by spaces]")
    return Program(what, task, "squares", _main(f"print(' '.join(str(k * k) for k in range(1, {n + 1})))\n", rng),
                   " ".join(str(k * k) for k in range(1, n + 1)))


def even_numbers(rng):
    n = rng.randint(10, 40)
    what, task = _say(rng, f"print{{s}} the even numbers <up to|from 1 to> {n}")
    return Program(what, task, "evens", _main(f"print(*range(2, {n + 1}, 2))\n", rng), " ".join(map(str, range(2, n + 1, 2))))


def sum_file(rng):
    xs = [rng.randint(-20, 99) for _ in range(rng.randint(4, 9))]
    name = rng.choice(["numbers.txt", "values.txt", "data.txt"])
    what, task = _say(rng, f"read{{s}} {name} (one number per line) and print{{s}} the <sum|total>")
    src = f"with open({name!r}) as f:\n    print(sum(int(line) for line in f if line.strip()))\n"
    return Program(what, task, "sum_file", src, str(sum(xs)), {name: "".join(f"{x}\n" for x in xs)})


def longest_line(rng):
    lines = rng.sample(PHRASES, 4)
    name = rng.choice(["notes.txt", "lines.txt", "quotes.txt"])
    what, task = _say(rng, f"print{{s}} the longest line of {name}")
    src = f"with open({name!r}) as f:\n    print(max(f.read().splitlines(), key=len))\n"
    return Program(what, task, "longest_line", src, max(lines, key=len), {name: "\n".join(lines) + "\n"})


def count_lines_file(rng):
    k = rng.randint(3, 12)
    name = rng.choice(["log.txt", "input.txt", "todo.txt"])
    what, task = _say(rng, f"count{{s}} the lines in {name} and print{{s}} the number")
    src = f"with open({name!r}) as f:\n    print(len(f.read().splitlines()))\n"
    return Program(what, task, "line_count", src, str(k),
                   {name: "".join(f"line {i}\n" for i in range(1, k + 1))})


def letter_count(rng):
    w = rng.choice(WORDS)
    what, task = _say(rng, f"print{{s}} each letter of '{w}' with how many times it appears, in alphabetical order")
    src = f"word = {w!r}\nfor letter in sorted(set(word)):\n    print(letter, word.count(letter))\n"
    return Program(what, task, "letters", _main(src, rng), "\n".join(f"{c} {w.count(c)}" for c in sorted(set(w))))


def power_table(rng):
    base, n = rng.randint(2, 5), rng.randint(4, 10)
    what, task = _say(rng, f"print{{s}} the first {n} powers of {base}[, starting at {base}^0]")
    return Program(what, task, "powers", _main(f"print(*[{base} ** i for i in range({n})])\n", rng),
                   " ".join(str(base ** i) for i in range(n)))


def greet_names(rng):
    names = rng.sample(NAMES, rng.randint(2, 4))
    what, task = _say(rng, f"print{{s}} 'hi NAME' for each of {', '.join(names)}")
    src = f"for name in {names!r}:\n    print(f\"hi {{name}}\")\n"
    return Program(what, task, "greetings", _main(src, rng), "\n".join(f"hi {n}" for n in names))


KINDS = [hello, sum_range, factorial, fibonacci, primes, fizzbuzz, times_table, reverse_word, vowels, celsius,
         word_count, word_freq, palindromes, sort_numbers, stats, triangle, countdown, gcd, digit_sum, binary,
         collatz, caesar, title_case, leap_years, squares, even_numbers, sum_file, longest_line, count_lines_file,
         letter_count, power_table, greet_names]


def program(rng: random.Random) -> Program:
    return rng.choice(KINDS)(rng)
