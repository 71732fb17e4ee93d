"""What the notebooks' prose states, pinned to the library or the notebook it describes."""

from __future__ import annotations

import re

import pytest

from harness import cell_text, points, source_cell, source_notebook


def test_peft_defaults_are_the_ones_lora_config_has():
    from peft import LoraConfig

    text = cell_text("01_lora_basics", "layer_md")
    m = re.search(r"a bare `LoraConfig\(\)` has `r = (\d+)` and `lora_alpha = (\d+)`", text)
    assert m, "01's layer_md no longer states PEFT's defaults"
    assert (int(m.group(1)), int(m.group(2))) == (LoraConfig().r, LoraConfig().lora_alpha)
    assert "PEFT's defaults in this course" not in text


def test_the_bootstrap_is_said_to_be_graded_with_its_points():
    text = cell_text("05_qlora_lab", "bootstrap_md")
    m = re.search(r"graded again here, by `(test_\w+)`: (\d+) points?", text)
    assert m, "05's bootstrap_md should say the bootstrap is graded, and for how much"
    assert points("05_qlora_lab")[m.group(1)] == int(m.group(2))


def test_the_780_gb_is_labelled_a_reconstruction_of_a_lower_bound():
    text = cell_text("02_quantization", "budget_md")
    assert "*more than* 780 GB" in text and "reconstruction" in text
    assert 65e9 * 12 / 1e9 == 780


def test_nf4_shrinks_16_bit_weights_about_fourfold():
    text = cell_text("05_qlora_lab", "peek_md")
    bits = 4 + 8 / 64 + 32 / (64 * 256)  # a 4-bit code, an 8-bit constant per 64, a 32-bit one per 64 x 256
    m = re.search(r"to ([\d.]+) \(NF4.*?about fourfold, ([\d.]+)×", text)
    assert m, "05's peek_md should give the bits and the ratio"
    assert float(m.group(1)) == round(bits, 3) and float(m.group(2)) == round(16 / bits, 1)
    assert "shrinks eightfold" not in text


def test_merging_into_a_4_bit_base_is_said_to_round_as_peft_warns():
    import inspect

    from peft.tuners.lora import bnb

    text = cell_text("01_lora_basics", "merge_md")
    (warning,) = re.findall(r'"(Merge lora module to 4-bit linear[^"]*)"', text)
    assert warning in inspect.getsource(bnb), "PEFT no longer warns with the words the notebook quotes"


def test_dequantization_is_said_to_run_backward_and_in_recomputation_too():
    text = cell_text("02_quantization", "qlora_picture_md")
    assert "backward pass" in text and "recomputes" in text


def test_the_feature_candidates_are_not_said_to_be_lora_or_qlora():
    text = cell_text("03_metrics", "before_after_md")
    assert "the way LoRA and QLoRA shrink" not in text and "the low-rank idea behind LoRA" not in text
    assert "restricts the *update*" in text and "*frozen weights* in 4 bits" in text


# Test cells a points table counts under a name other than their own.
COUNTED_WITH = {"test_headline_gpt3": "lora_param_count"}  # 01: the paper's headline, with your count


@pytest.mark.parametrize("assignment", ["01_lora_basics", "05_qlora_lab"])
def test_the_points_table_states_the_points_each_name_is_graded(assignment):
    """Each row ``| `name` | N ...`` of the intro's table: N is what the cells for that name are worth
    (its tests ``test_<name>...``, or the hand-graded cell of that id)."""
    worth: dict[str, float] = {}
    for cell in source_notebook(assignment).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            worth[meta["grade_id"]] = float(meta.get("points", 0))
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d+)", source_cell(assignment, "intro"), re.M))
    assert rows, f"{assignment}'s intro has no points table"
    for name, stated in rows.items():
        graded = sum(
            p
            for cell, p in worth.items()
            if cell == name
            or cell == f"test_{name}"
            or cell.startswith(f"test_{name}_")
            or COUNTED_WITH.get(cell) == name
        )
        assert graded == float(stated), (
            f"{assignment}: the table gives {name} {stated} points; its cells are worth {graded:g}"
        )
    assert sum(map(float, rows.values())) == sum(worth.values()), "the table leaves out graded points"


def test_05_says_what_its_tests_check_of_the_layer():
    text = cell_text("05_qlora_lab", "layer_md")
    assert "`base.weight.float()`" in text and "`bfloat16`" in text
    assert "`block_constants()` returns every block's absmax as float32" in text


def test_the_recipe_says_what_prepare_model_for_kbit_training_does():
    import inspect

    from peft.utils import other

    import course.lab
    import course.train

    text = cell_text("05_qlora_lab", "recipe_md")
    code = inspect.getsource(other.prepare_model_for_kbit_training)
    assert "freezes every parameter" in text and "param.requires_grad = False" in code
    assert "to float32" in text and "param.data.to(torch.float32)" in code
    assert "`enable_input_require_grads`" in text and "enable_input_require_grads" in code
    assert "`use_reentrant=False`" in text and '"use_reentrant": False' in inspect.getsource(course.lab)
    assert "`PagedAdamW8bit`" in text and "PagedAdamW8bit" in inspect.getsource(course.train)
    assert "20–30%" not in text and "keeps the layer norms and the head in 32 bits" not in text


def test_the_rule_says_why_speed_is_not_part_of_the_verdict():
    whole = " ".join(cell_text("03_metrics", "whole_rule_md").split())
    assert "**Why not speed?** The seed's rule also asks for faster training." in whole
    assert "about 25% faster training on GPT-3 175B, §4.2" in whole and "QLoRA is *slower* per step" in whole
    rules = " ".join(cell_text("05_qlora_lab", "rules_md").split())
    assert "Speed is not in the rule" in rules and "question 11 of notebook 04" in rules


ASSIGNMENTS = ("01_lora_basics", "02_quantization", "03_metrics", "04_practice", "05_qlora_lab")


def test_every_notebook_states_its_work_and_its_measured_run_time():
    hours = {}
    for assignment in ASSIGNMENTS:
        intro = " ".join(source_notebook(assignment).cells[0].source.split())
        work = re.search(r"\*\*Time:\*\* about ([\d½]+) hours? of work", intro)
        assert work, f"{assignment}: the intro should say how long the work takes"
        hours[assignment] = float(work.group(1).replace("½", ".5"))
        run = re.search(
            r"Running every cell, answers filled in, takes about [^(]+\(measured ([^)]+) with `benchmarks/notebook_times.py`\)",
            intro,
        )
        assert run, f"{assignment}: the intro should give the measured time of a whole run"
    assert 12 <= sum(hours.values()) <= 15, f"{hours}: the course is 12 to 15 hours of work"


@pytest.mark.parametrize(
    ("assignment", "text_cell", "test_cell", "functions"),
    [
        ("01_lora_basics", "headline_md", "test_headline_gpt3", ("lora_param_count",)),
        ("02_quantization", "budget_note", "test_headline_qlora_65b", ("weights_gb", "quant_constant_bits")),
    ],
)
def test_a_headline_check_says_it_grades_earlier_functions_again(assignment, text_cell, test_cell, functions):
    text = cell_text(assignment, text_cell)
    test = source_cell(assignment, test_cell)
    assert all(f"{name}(" in test for name in functions), "the check no longer calls these functions"
    assert f"({points(assignment)[test_cell]:g} point" in text and "costs its own points and this one too" in text
