# The driver as a package, callPackage-able with the arguments nixpkgs' test framework passes
# to its own driver (enableOCR, extraPythonPackages, qemu_pkg, enableNspawn), and buildable alone:
#   nix-build                      (uses <nixpkgs>)
#   pkgs.callPackage ./default.nix { enableOCR = true; }
{
  pkgs ? import <nixpkgs> { },
  lib ? pkgs.lib,
  python3Packages ? pkgs.python3Packages,
  makeWrapper ? pkgs.makeWrapper,
  qemu_pkg ? pkgs.qemu_test or pkgs.qemu,
  vde2 ? pkgs.vde2,
  tesseract ? pkgs.tesseract,
  systemd ? pkgs.systemd,
  util-linux ? pkgs.util-linux,
  enableOCR ? false,
  enableNspawn ? false,
  extraPythonPackages ? (_: [ ]),
  # Every run writes this HTML report into its output directory (in a Nix build, $out, with a
  # line in nix-support/hydra-build-products); null: only when --html-report asks for one.
  htmlReport ? "report.html",
  ...
}:
python3Packages.buildPythonApplication {
  pname = "nixos-test-driver";
  version = "0.1.0";
  format = "setuptools";
  src = lib.cleanSourceWith {
    src = ./.;
    filter = path: _type: !(lib.hasInfix "/tests/" path || lib.hasSuffix "/tests" path);
  };

  nativeBuildInputs = [ makeWrapper ];
  propagatedBuildInputs =
    (with python3Packages; [
      colorama
      ipython
      jinja2
      junit-xml
      pillow
      ptpython
      pytest-testinfra # machine.run/user/file/service (testinfra's Host API)
      remote-pdb
      watchdog # --watch: inotify events on the script and its helper modules
    ])
    ++ extraPythonPackages python3Packages;

  # QEMU and vde_switch are run by name; tesseract when OCR is wanted; systemd-nspawn and
  # nsenter when the test has containers.
  makeWrapperArgs = [
    "--prefix PATH : ${
      lib.makeBinPath (
        [
          qemu_pkg
          vde2
        ]
        ++ lib.optional enableOCR tesseract
        ++ lib.optionals enableNspawn [
          systemd
          util-linux
        ]
      )
    }"
  ]
  ++ lib.optional (htmlReport != null) "--set-default htmlReport ${lib.escapeShellArg htmlReport}";

  doCheck = false; # the tests boot real guests: run them with scripts/test
  meta = {
    description = "A drop-in replacement for the NixOS test driver";
    license = lib.licenses.mit;
    mainProgram = "nixos-test-driver";
  };
}
