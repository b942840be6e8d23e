import re
from pathlib import Path

from setuptools import find_packages, setup

# the one place the version is kept: modeling_livt/__init__.py (read as text: importing the package needs torch)
VERSION = re.search(
    r'^__version__ = "([^"]+)"$', (Path(__file__).parent / "modeling_livt" / "__init__.py").read_text(encoding="utf-8"),
    re.MULTILINE,
).group(1)

# console commands: livt-<name> -> modeling_livt_scripts._console.<function> (scripts/_console.py), which runs the
# script's main() as `python scripts/<script>.py` would
CLI = {"mgp": "mgp", "finetune": "finetune", "teacher": "teacher", "deit-lt": "deit_lt", "eval": "evaluate",
       "convert": "convert", "demo": "demo", "prepare-dataset": "prepare_dataset"}

setup(
    name="modeling_livt",
    version=VERSION,
    description="Hugging Face-native LiVT and DeiT-LT: vision transformers trained from scratch on long-tailed data",
    long_description=Path("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The repository keeps the model card templates in the top-level model_cards/ and the CLIs in scripts/ (the fixed
    # layout); the wheel installs them as modeling_livt/model_cards/ (read by modeling_livt.hub.model_card) and as the
    # modeling_livt_scripts package behind the livt-* commands.
    packages=find_packages(include=["modeling_livt", "modeling_livt.*", "trainers", "trainers.*"])
    + ["modeling_livt.model_cards", "modeling_livt_scripts"],
    package_dir={"modeling_livt.model_cards": "model_cards", "modeling_livt_scripts": "scripts"},
    package_data={
        "modeling_livt.evaluation": ["long_tail_metric/*.py"],
        "modeling_livt.model_cards": ["*.md.j2", "*.json"],  # templates and the papers they cite
    },
    entry_points={
        "console_scripts": [f"livt-{name}=modeling_livt_scripts._console:{function}" for name, function in CLI.items()]
    },
    install_requires=[
        "torch>=2.4,<3",
        "torchvision>=0.19",
        "transformers>=5.0,<6",
        "datasets>=3.0",
        "evaluate>=0.4.3",
        "accelerate>=1.0",
        "huggingface_hub>=1.0",
        "safetensors>=0.4",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
        "pillow>=10.0",
        "numpy>=1.24",
        "jinja2>=3.1",
        "timm>=1.0",  # the training transforms' RandAugment (transforms.py only; the model files never import it)
        "peft>=0.13,<1",  # run_finetune.py --peft lora (trainers/lora.py only)
    ],
    extras_require={
        "dev": [
            # timm, also the tests' reference peer, is a runtime dependency above
            "pytest>=8.0", "pytest-xdist>=3.5", "pytest-timeout>=2.2", "ruff>=0.6", "hypothesis>=6.100",
            "tensorboard>=2.15",
        ]
    },
)
