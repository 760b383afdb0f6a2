"""Recipes validate on load, and a malformed one fails naming the file and the field."""

from __future__ import annotations

import pytest

from medmo_pipeline.config import RecipeError, load_recipe
from tests.conftest import embedded_recipe_data, write_recipe


@pytest.mark.parametrize("name", ["embedded", "paper"])
def test_shipped_recipes_validate(name):
    recipe = load_recipe(name)
    assert recipe.checkpoints() == ["base_model", "stage1", "stage2", "stage3", "rl"]


def test_paper_recipe_carries_the_papers_settings():
    recipe = load_recipe("paper")
    assert recipe.base_model.name_or_path == "Qwen/Qwen3-VL-8B-Instruct"
    s1, s2, s3 = (recipe.stages[s] for s in ("stage1", "stage2", "stage3"))
    assert (s1.optim.learning_rate, s1.optim.per_device_train_batch_size, s1.optim.gradient_accumulation_steps) == (
        1e-5, 10, 2)
    assert (s2.optim.learning_rate, s2.optim.per_device_train_batch_size, s2.optim.gradient_accumulation_steps) == (
        8e-6, 2, 8)
    assert (s3.optim.learning_rate, s3.optim.per_device_train_batch_size) == (5e-6, 14)
    assert s1.image.max_pixels == 768 * 768 and s2.image.max_pixels == 1280 * 1280
    rl = recipe.rl
    assert (rl.grpo.num_generations, rl.grpo.max_prompt_length, rl.grpo.max_completion_length) == (8, 2048, 1024)
    assert (rl.grpo.epsilon, rl.grpo.epsilon_high, rl.grpo.loss_type) == (0.15, 0.25, "dapo")
    assert (rl.optim.num_train_epochs, rl.optim.per_device_train_batch_size, rl.optim.gradient_accumulation_steps) == (
        2, 2, 4)
    assert recipe.seed == 42 and rl.optim.warmup_ratio == 0.1 and rl.optim.weight_decay == 0.1
    assert set(rl.rewards) == {"box", "label_accuracy", "tag_count", "soft_overlong"}


def _broken(tmp_path, mutate) -> str:
    data = embedded_recipe_data()
    mutate(data)
    path = write_recipe(tmp_path / "broken.yaml", data)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return str(info.value)


def test_unknown_key_names_file_and_field(tmp_path):
    message = _broken(tmp_path, lambda d: d["stages"]["stage2"]["optim"].update(learnin_rate=1e-3))
    assert "broken.yaml" in message
    assert "stages.stage2.optim.learnin_rate" in message and "unknown field" in message


def test_wrong_type_names_field(tmp_path):
    message = _broken(tmp_path, lambda d: d["stages"]["stage1"]["optim"].update(learning_rate="fast"))
    assert "stages.stage1.optim.learning_rate" in message and "broken.yaml" in message


def test_missing_base_model_names_field(tmp_path):
    def mutate(d):
        d["base_model"] = {"source": "hub"}

    message = _broken(tmp_path, mutate)
    assert "base_model" in message and "name_or_path" in message


def test_missing_base_model_section(tmp_path):
    message = _broken(tmp_path, lambda d: d.pop("base_model"))
    assert "base_model" in message and "Field required" in message


def test_parent_must_be_an_earlier_stage(tmp_path):
    message = _broken(tmp_path, lambda d: d["stages"]["stage1"].update(parent="stage3"))
    assert "stages.stage1.parent" in message


def test_unknown_recipe_name_lists_shipped_ones():
    with pytest.raises(RecipeError, match="embedded"):
        load_recipe("no-such-recipe")


def test_recipe_yaml_cannot_execute_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)


def test_editing_one_stage_changes_only_that_sections_hash(tmp_path):
    original = load_recipe("embedded")
    data = embedded_recipe_data()
    data["stages"]["stage2"]["optim"]["learning_rate"] = 1e-3
    edited = load_recipe(write_recipe(tmp_path / "edited.yaml", data))
    changed = {s for s in ["base_model", "corpus", "stage1", "stage2", "stage3", "rl", "evaluation"]
               if original.section_hash(s) != edited.section_hash(s)}
    assert changed == {"stage2"}


def test_rl_reference_policy_settings_reach_trls_config(tmp_path):
    from medmo_pipeline.model.loading import load_processor
    from medmo_pipeline.model.tiny import build_tiny_base_model
    from medmo_pipeline.training.grpo import grpo_config

    data = embedded_recipe_data()
    data["rl"]["grpo"].update(beta=0.05, sync_ref_model=True, ref_model_sync_steps=7, ref_model_mixup_alpha=0.9)
    recipe = load_recipe(write_recipe(tmp_path / "kl.yaml", data))
    directory = build_tiny_base_model(tmp_path / "base", texts=["a b c 1 2 3"] * 10, spec={}, seed=0)
    config = grpo_config(recipe.rl, load_processor(directory), output_dir=tmp_path / "work", seed=42,
                         reward_weights=[1.0, 1.0, 1.0])
    assert (config.beta, config.sync_ref_model, config.ref_model_sync_steps, config.ref_model_mixup_alpha) == (
        0.05, True, 7, 0.9)
    assert (config.epsilon, config.epsilon_high, config.loss_type) == (0.15, 0.25, "dapo")
    assert config.num_generations == recipe.rl.grpo.num_generations


def test_paper_mixtures_name_registry_datasets():
    from medmo_pipeline.config import load_recipe

    recipe = load_recipe("paper")
    sources = set(recipe.corpus.source_names())
    assert len(sources) == 45
    for name in [*recipe.stages, "rl"]:
        assert set(recipe.stage(name).mixture.sources) <= sources, name


def test_a_mixture_naming_a_source_the_corpus_lacks_is_a_clear_error(tmp_path):
    import pytest

    from medmo_pipeline.config import RecipeError, load_recipe
    from tests.conftest import embedded_recipe_data, write_recipe

    data = embedded_recipe_data()
    data["stages"]["stage2"]["mixture"]["sources"]["synth_ct"] = 1
    with pytest.raises(RecipeError, match=r"stages\.stage2\.mixture\.sources: \['synth_ct'\] are not corpus sources"):
        load_recipe(write_recipe(tmp_path / "bad.yaml", data))


# The paper's appendix, stage by stage (registry names): what recipes/paper.yaml must train on.
PAPER_STAGE_SOURCES = {
    "stage1": {"medtrinity"},
    "stage2": {"vqa_med_2019", "pubmed_vision", "nih_vqa", "quilt_llava_pretrain", "mimic_ext_mimic_cxr_vqa",
               "vqa_rad", "pathvqa", "pmc_vqa", "slake", "ct_rate",
               "iu_xray", "mimic_cxr", "chexpert", "chexpert_plus", "medpix_clinqa", "roco", "roco_v2", "fairvlmed",
               "nih_chest_xray", "deeplesion", "grazpedwri_dx", "deepcell", "bacteria", "ctc", "medsg"},
    "stage3": {"medqa", "pubmedqa", "pmc_oa", "medmcqa", "pmc_instructqa", "medquad", "medical_meadow_medqa",
               "chatdoctor_healthcaremagic_100k", "alpacare_medinstruct_52k", "chatdoctor_icliniq", "medreason",
               "mimic_iv_ext_bhc", "medical_r1_distill_data", "medical_o1_reasoning_sft", "meadow_pubmed_causal",
               "meadow_medical_flashcards", "meadow_medqa", "meadow_wikidoc", "medical_meadow_cord19"},
    "rl": {"nih_chest_xray", "deeplesion", "bacteria", "ctc", "slake", "grazpedwri_dx", "medsg"},
}
PAPER_STAGE_SIZES = {"stage1": 18_500_000, "stage2": 3_000_000, "stage3": 4_300_000, "rl": 300_000}


def test_paper_stages_train_on_the_papers_lists_with_its_sizes():
    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.data.registry import load_registry

    recipe = load_recipe("paper")
    registry = {entry.name: entry for entry in load_registry().datasets}
    for name, expected in PAPER_STAGE_SOURCES.items():
        mix = recipe.stage(name).mixture
        assert set(mix.sources) == expected, name
        assert mix.weights() is None, f"{name}: the paper gives no per-source weights (one pass over each)"
        assert mix.declared_samples == mix.max_samples == PAPER_STAGE_SIZES[name], name
        assert "sources" in mix.open or "tasks" in mix.open, name  # the choice the paper leaves open is marked
        for source in expected:  # the stage keeps at least one task each source has
            assert set(registry[source].tasks) & set(mix.tasks), (name, source)
    assert set(recipe.stage("stage1").mixture.tasks) == {"caption", "vqa"}  # MedTrinity's captions and VQA
    trained = set().union(*(PAPER_STAGE_SOURCES[s] for s in ("stage1", "stage2", "stage3")))
    assert trained == set(recipe.corpus.source_names())  # every trained dataset of the registry, in some stage


def test_open_notes_name_mixture_fields(tmp_path):
    import pytest

    from medmo_pipeline.config import RecipeError, load_recipe
    from tests.conftest import embedded_recipe_data, write_recipe

    data = embedded_recipe_data()
    data["stages"]["stage1"]["mixture"]["open"] = {"weights": "no such field"}
    with pytest.raises(RecipeError, match=r"open: \['weights'\] are not mixture fields"):
        load_recipe(write_recipe(tmp_path / "bad.yaml", data))
