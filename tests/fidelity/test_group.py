"""Pachyderm's group example (examples/group): lab results grouped by patient and by
hospital from one repo (the example's own shell pipelines), and the retail data grouped
by STOREID across three repos (``group_store_revenue``; the image's ``main.py`` is
replaced by ``programs/store_revenue.py``)."""

from __future__ import annotations

from typing import Any

from tests.engine.conftest import Pachlocal

from .support import (
    REDUCE_STDIN,
    Files,
    create_pipeline,
    job_counts,
    load_retail,
    put_tree,
)


def lab_result(patient: int, order: int, cholesterol: int, triglyceride: int) -> bytes:
    """One file of examples/group/Makefile's `setup-lab` (no trailing newline)."""
    return (
        f"PID|PATID{patient}\nORC|ORD{order}\n"
        f"OBX|1|NM|2093-3^Cholesterol|{cholesterol}|mg/dL\n"
        f"OBX|2|NM|2571-8^Triglyceride|{triglyceride}|mg/dL"
    ).encode()


LABRESULTS: Files = {
    "/T1606707557-LIPID-PATID1-CLIA24D9871327.txt": lab_result(1, 777888, 196, 100),
    "/T1606331395-LIPID-PATID2-CLIA24D9871327.txt": lab_result(2, 777889, 212, 110),
    "/T1606707579-LIPID-PATID3-CLIA24D9871327.txt": lab_result(3, 777890, 188, 89),
    "/T1606707597-LIPID-PATID4-CLIA24D9871327.txt": lab_result(4, 777891, 230, 132),
    "/T1606707613-LIPID-PATID1-CLIA24D9871328.txt": lab_result(1, 777892, 199, 101),
    "/T1606707635-LIPID-PATID3-CLIA24D9871328.txt": lab_result(3, 777893, 187, 92),
}


def lab_group_spec(name: str, glob: str) -> dict[str, Any]:
    """pipelines/lab/lab_group_by_{hospital,patient}.pipeline.json, verbatim."""
    return {
        "pipeline": {"name": name},
        "description": "A pipeline that groups lab test results files.",
        "input": {
            "group": [
                {"pfs": {"repo": "labresults", "branch": "master", "glob": glob, "groupBy": "$1"}}
            ]
        },
        "transform": {
            "cmd": ["bash"],
            "stdin": [
                "mkdir -p /pfs/out/${PACH_DATUM_labresults_GROUP_BY}/",
                "cp /pfs/labresults/* /pfs/out/${PACH_DATUM_labresults_GROUP_BY}/",
            ],
        },
    }


def reduce_spec(name: str, repo: str) -> dict[str, Any]:
    """pipelines/lab/reduce_group_by_{hospital,patient}.pipeline.json, verbatim."""
    return {
        "pipeline": {"name": name},
        "description": "A pipeline that consolidates all lab results in one file per group.",
        "input": {"pfs": {"repo": repo, "branch": "master", "glob": "/*"}},
        "transform": {"cmd": ["bash"], "stdin": [s.format(repo=repo) for s in REDUCE_STDIN]},
    }


def grouped(groups: dict[str, list[str]]) -> Files:
    """group -> lab file names, as the output of a lab group pipeline."""
    return {f"/{g}/{name}": LABRESULTS[f"/{name}"] for g, names in groups.items() for name in names}


def reduced(groups: dict[str, list[str]]) -> Files:
    """One file per group: its lab files concatenated in name order (the shell's glob)."""
    return {
        f"/{g}.txt": b"".join(LABRESULTS[f"/{n}"] for n in sorted(names))
        for g, names in groups.items()
    }


# examples/group/img/group_example1.png: the expected output of both lab pipelines
BY_PATIENT = {
    "1": [
        "T1606707557-LIPID-PATID1-CLIA24D9871327.txt",
        "T1606707613-LIPID-PATID1-CLIA24D9871328.txt",
    ],
    "2": ["T1606331395-LIPID-PATID2-CLIA24D9871327.txt"],
    "3": [
        "T1606707579-LIPID-PATID3-CLIA24D9871327.txt",
        "T1606707635-LIPID-PATID3-CLIA24D9871328.txt",
    ],
    "4": ["T1606707597-LIPID-PATID4-CLIA24D9871327.txt"],
}
BY_HOSPITAL = {
    "24D9871327": [
        "T1606331395-LIPID-PATID2-CLIA24D9871327.txt",
        "T1606707557-LIPID-PATID1-CLIA24D9871327.txt",
        "T1606707579-LIPID-PATID3-CLIA24D9871327.txt",
        "T1606707597-LIPID-PATID4-CLIA24D9871327.txt",
    ],
    "24D9871328": [
        "T1606707613-LIPID-PATID1-CLIA24D9871328.txt",
        "T1606707635-LIPID-PATID3-CLIA24D9871328.txt",
    ],
}


def test_lab_results_grouped_by_patient_and_by_hospital(pl: Pachlocal) -> None:
    """Example 1: one datum per capture group (4 patients, 2 hospitals), each copying
    its files into a directory named by ``PACH_DATUM_labresults_GROUP_BY``; the reduce
    pipelines then write one file per patient / hospital."""
    pl("create", "repo", "labresults")
    put_tree(pl, "labresults@master", LABRESULTS)
    create_pipeline(pl, lab_group_spec("group_by_hospital", "/*-CLIA(*).txt"))
    create_pipeline(pl, lab_group_spec("group_by_patient", "/*-PATID(*)-*.txt"))
    create_pipeline(pl, reduce_spec("reduce_group_by_hospital", "group_by_hospital"))
    create_pipeline(pl, reduce_spec("reduce_group_by_patient", "group_by_patient"))
    # README: "one datum is created for each patient ID"
    assert job_counts(pl, "group_by_patient") == [("success", 4, 0, 4)]
    assert job_counts(pl, "group_by_hospital") == [("success", 2, 0, 2)]
    assert pl.files("group_by_patient@master") == grouped(BY_PATIENT)
    assert pl.files("group_by_hospital@master") == grouped(BY_HOSPITAL)
    # README: "notice the 2 text files /24D9871327.txt and /24D9871328.txt"
    assert pl.files("reduce_group_by_hospital@master") == reduced(BY_HOSPITAL)
    assert pl.files("reduce_group_by_patient@master") == reduced(BY_PATIENT)


def retail_group_spec() -> dict[str, Any]:
    """pipelines/retail/retail_group.pipeline.json; ``main.py`` is the stand-in."""
    return {
        "pipeline": {"name": "group_store_revenue"},
        "description": "A pipeline that groups purchases and returns by storeId to calculate "
        "the gross_revenue minus returns of each store.",
        "input": {
            "group": [
                {"pfs": {"repo": repo, "branch": "master", "glob": glob, "groupBy": "$1"}}
                for repo, glob in (
                    ("stores", "/STOREID(*).txt"),
                    ("purchases", "/*_STOREID(*).txt"),
                    ("returns", "/*_STOREID(*).txt"),
                )
            ]
        },
        "transform": {
            "cmd": [
                "python",
                "store_revenue.py",
                "/pfs/stores",
                "/pfs/purchases",
                "/pfs/returns",
                "/pfs/out",
            ],
            "image": "pachyderm/example-group:2.1.0",
        },
    }


def revenue(store: str, ordered: float, returned: float, net: float) -> bytes:
    return (
        f"\n{store} \n\nORDER_AMOUNT|{ordered}|RETURN_AMOUNT|{returned}|NET_AMOUNT|{net}\n".encode()
    )


def test_store_revenue_grouped_across_three_repos(pl: Pachlocal) -> None:
    """Example 2: one datum per STOREID across stores, purchases and returns (6, store 0
    having a return only), one net-amount file per store."""
    load_retail(pl, "stores", "purchases", "returns")
    create_pipeline(pl, retail_group_spec())
    # README: "one datum is created for each store ID" (0 to 5)
    assert job_counts(pl, "group_store_revenue") == [("success", 6, 0, 6)]
    # examples/group/img/group_example2_digest.png (purchase, return, net per store) and
    # img/get_file_group_store_revenue_master.png (the content of /5.txt)
    assert pl.files("group_store_revenue@master") == {
        "/0.txt": revenue("This return store does not exist", 0.0, 50.0, -50.0),
        "/1.txt": revenue("Store: 1 - washington st.", 450.0, 100.0, 350.0),
        "/2.txt": revenue("Store: 2 - hollywood bvd.", 75.0, 0.0, 75.0),
        "/3.txt": revenue("Store: 3 - beverly hills", 300.0, 0.0, 300.0),
        "/4.txt": revenue("Store: 4 - mariposa st.", 0.0, 0.0, 0.0),
        "/5.txt": revenue("Store: 5 - tremont st.", 450.0, 350.0, 100.0),
    }
