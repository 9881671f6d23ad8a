from setuptools import find_packages, setup

setup(
    name="nixos-test-driver",
    version="0.1.0",
    description="A drop-in replacement for the NixOS test driver",
    license="MIT",
    packages=find_packages(include=["test_driver", "test_driver.*"]),
    package_data={"test_driver": ["py.typed", "templates/*.j2"]},
    python_requires=">=3.10",
    install_requires=["ipython", "ptpython", "colorama", "jinja2", "junit-xml", "pillow", "pytest-testinfra", "remote-pdb", "watchdog"],
    extras_require={"test": ["pytest", "pytest-xdist", "mypy", "pexpect", "coverage", "numpy"]},
    entry_points={
        "console_scripts": [
            "nixos-test-driver=test_driver:main",
            "generate-driver-symbols=test_driver:generate_driver_symbols",
            "nixos-test-driver-typecheck=test_driver.typecheck:main",
            "nixos-test-driver-report=test_driver.html_report:main",
        ]
    },
)
