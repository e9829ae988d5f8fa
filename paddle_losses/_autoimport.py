"""Import every module of a package so that its ``@register_*`` decorators run."""
import importlib
import pkgutil


def import_submodules(package_name, package_path):
    for info in pkgutil.walk_packages(package_path, prefix=package_name + "."):
        importlib.import_module(info.name)
