"""The data stage: dataset folders → verified, split manifest (``anoseg prepare``) and the demo dataset (``synth``).

Modules (import them directly; this package imports nothing heavy itself):

* ``images``   — decode any image file to (H, W, 3) uint8; full-decode verification;
* ``masks``    — the only place a mask is binarised (every encoding → bool);
* ``layouts``  — one reader per on-disk layout (MVTec AD, VisA, MVTec 3D AD, generated pairs);
* ``split``    — the 1/3–2/3 rule, alone;
* ``validation`` — the issue catalogue, the data report and file verification (anomaly and scene data);
* ``build``    — folders → verified, split manifest rows and the data report (``build_manifest``);
* ``manifest`` — the manifest CSV (``write_manifest``, ``read_manifest``, ``count_table``);
* ``synth``    — the built-in demo dataset (``make_demo_data``).
"""
