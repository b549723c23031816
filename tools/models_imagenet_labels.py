"""Write models/labels/imagenet.txt from torchvision's ImageNet category list.

torchvision is not needed to build the models: ``build_models.py`` reads the committed
``models/labels/imagenet.txt``. Run this only to regenerate that file, with any Python
that has torchvision installed::

    python tools/models_imagenet_labels.py
"""

from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "models" / "labels" / "imagenet.txt"


def main() -> None:
    import torchvision
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    if len(_IMAGENET_CATEGORIES) != 1000:
        raise SystemExit(f"expected 1000 ImageNet classes, torchvision "
                         f"{torchvision.__version__} has {len(_IMAGENET_CATEGORIES)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(f"{name}\n" for name in _IMAGENET_CATEGORIES))
    print(f"wrote {OUT} (torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
