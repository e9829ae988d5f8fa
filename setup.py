import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"


class BuildPyWithConfigs(build_py):
    """Also ship the repository's configs/ (the default and quick-start configs) as package data in
    paddle_losses/configs/, so an installed package finds them without a checkout. The checkout keeps one
    copy, at the top, where `python tools/train.py -c configs/...` reads it."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's configs/ directly
            return
        target = Path(self.build_lib) / "paddle_losses" / "configs"
        shutil.copytree(HERE / "configs", target, dirs_exist_ok=True,
                        ignore=lambda folder, files: [f for f in files if not (f.endswith(".yaml")
                                                                               or (Path(folder) / f).is_dir())])

setup(
    name="paddle_losses",
    version="0.1.0",
    description="PaddleClas's metric-learning and classification losses for PaddlePaddle, selectable from YAML",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["paddle_losses", "paddle_losses.*"]),
    install_requires=[
        "paddlepaddle>=3.0",
        "numpy",
        "pyyaml>=5.1",
    ],
    extras_require={
        # The embedded quick-start dataset (scikit-learn's handwritten digits, shipped inside the wheel).
        "data": ["scikit-learn>=0.24"],
        # Nice-to-haves of the trainer; everything works without them.
        "train": ["scikit-learn>=0.24", "tqdm"],
        "visualdl": ["visualdl>=2.2"],
        "test": ["pytest>=7", "setuptools>=70.1", "scikit-learn>=0.24"],
    },
    cmdclass={"build_py": BuildPyWithConfigs},
    entry_points={
        "console_scripts": ["paddle-losses=paddle_losses.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    license="Apache-2.0",
)
