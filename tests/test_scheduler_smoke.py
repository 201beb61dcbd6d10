from puli.model.status import CommandStatus as CS, NodeStatus as NS
from farmkit import make_farm, add_rn, submit, task, run_pass, report


def test_smoke():
    farm = make_farm()
    add_rn(farm, "a:8000", cores=16)
    job = submit(farm, task("t", frames=(1, 10), minNbCores=4, maxNbCores=4))
    sent = run_pass(farm)
    assert len(sent) == 4
    assert job.status == NS.RUNNING
    cmd = sent[0][1]
    report(farm, cmd, CS.RUNNING, completion=0.5)
    report(farm, cmd, CS.DONE)
    assert cmd.status == CS.DONE
    assert len(run_pass(farm)) == 1
