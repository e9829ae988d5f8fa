from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

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
