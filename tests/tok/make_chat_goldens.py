#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
"""Chat-template goldens for tests/test_tokenizer.c, rendered with Jinja the
way transformers' apply_chat_template does (sandboxed environment,
trim_blocks, lstrip_blocks, loopcontrols).

    /tmp/tokenv/bin/pip install jinja2
    /tmp/tokenv/bin/python tests/tok/make_chat_goldens.py --v3 ../shared/tokenizers/deepseek-v3

Templates (written to chat_templates.json):
  v2   DeepSeek-V2-Chat / V2-Lite-Chat ("User: ...\\n\\n", "Assistant: ...")
  v25  DeepSeek-V2-Chat-0628 / V2.5 (<｜User｜>, <｜Assistant｜>, system inline)
  v3   DeepSeek-V3 (from its tokenizer_config.json)
  r1   DeepSeek-R1 (last system prompt, reasoning before </think> dropped,
       generation prompt ends with "<think>\\n")
"""
import argparse
import json
import os

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))

V2 = ("{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
      "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
      "{{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == 'assistant' %}"
      "{{ 'Assistant: ' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
      "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
      "{{ 'Assistant:' }}{% endif %}")

V25 = ("{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
       "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
       "{{ '<｜User｜>' + message['content'] }}{% elif message['role'] == 'assistant' %}"
       "{{ '<｜Assistant｜>' + message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
       "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}"
       "{{ '<｜Assistant｜>' }}{% endif %}")

R1 = ("{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
      "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}"
      "{%- for message in messages %}{%- if message['role'] == 'system' %}"
      "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}"
      "{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}"
      "{{'<｜User｜>' + message['content']}}{%- endif %}"
      "{%- if message['role'] == 'assistant' and message['content'] is none %}{%- set ns.is_tool = false -%}"
      "{%- for tool in message['tool_calls']%}{%- if not ns.is_first %}"
      "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + "
      "tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + "
      "'<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %}"
      "{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + "
      "'```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
      "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %}"
      "{%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %}"
      "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
      "{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}"
      "{% set content = content.split('</think>')[-1] %}{% endif %}"
      "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
      "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
      "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
      "{%- set ns.is_output_first = false %}{%- else %}"
      "{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}"
      "{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
      "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}")

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"

CONVERSATIONS = [
    [("user", "Hello!")],
    [("system", "You are a helpful assistant."), ("user", "What is MoE?")],
    [("user", "Hi"), ("assistant", "Hello, how can I help?"), ("user", "解释一下专家路由。")],
    [("system", "Be brief."), ("user", "1+1?"), ("assistant", "2"), ("user", "2+2?"), ("assistant", "4")],
    [("system", "First rule."), ("system", "Second rule."), ("user", "Go")],
    [("user", "a"), ("system", "midway"), ("user", "b")],
    [("assistant", "I start."), ("user", "ok")],
    [],
    [("user", "Think."), ("assistant", "<think>\nsteps\n</think>\n\nThe answer is 42."), ("user", "Again")],
    [("user", "Line one\nline two\n\n  indented"), ("assistant", "x</think>y</think>z")],
    [("system", ""), ("user", ""), ("assistant", "")],
    [("user", "Emoji 👩‍💻 and <｜User｜> inside text")],
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--v3", required=True, help="folder with DeepSeek-V3's tokenizer_config.json")
    a = ap.parse_args()
    v3 = json.load(open(os.path.join(a.v3, "tokenizer_config.json"), encoding="utf-8"))["chat_template"]
    templates = {"v2": V2, "v25": V25, "v3": v3, "r1": R1}
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    rows = []
    for fam, src in templates.items():
        tpl = env.from_string(src)
        for conv in CONVERSATIONS:
            msgs = [{"role": r, "content": c} for r, c in conv]
            for gen in (True, False):
                text = tpl.render(messages=msgs, add_generation_prompt=gen, bos_token=BOS, eos_token=EOS)
                rows.append({"family": fam, "bos": BOS, "eos": EOS, "messages": msgs,
                             "add_generation_prompt": gen, "text": text})
    with open(os.path.join(HERE, "chat_templates.json"), "w", encoding="utf-8") as f:
        json.dump(templates, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(HERE, "chat_golden.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print("wrote chat_templates.json and chat_golden.jsonl (%d lines)" % len(rows))


if __name__ == "__main__":
    main()
