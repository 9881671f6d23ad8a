# The replacement driver built with a given package set, overridable like nixpkgs' own
# (`.override { enableOCR = true; extraPythonPackages = p: [ p.requests ]; qemu_pkg = ...; }`).
{ pkgs }: pkgs.callPackage ../default.nix { }
