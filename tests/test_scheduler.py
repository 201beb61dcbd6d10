"""Dispatch rules over small hand-built farms (pure model, no HTTP, no database)."""
import pytest

from puli.model.outbox import Stop
from puli.model import job_operations, render_node_admin, worker_protocol
from puli.model.errors import Conflict, InvalidGraph, StaleAssignment
from puli.model.status import CommandStatus as CS, NodeStatus as NS, RenderNodeStatus as RS
from farmkit import add_rn, make_farm, report, run_pass, submit, task


def running_per_job(farm, *jobs):
    return [job.active_count for job in jobs]


def test_jobs_share_a_pool_in_proportion_to_dispatch_key():
    farm = make_farm()
    for i in range(10):
        add_rn(farm, f"rn{i}:8000", cores=1)
    a = submit(farm, task("a", frames=(1, 50)), dispatchKey=0)
    b = submit(farm, task("b", frames=(1, 50)))
    c = submit(farm, task("c", frames=(1, 50)))
    a.dispatch_key, b.dispatch_key, c.dispatch_key = 0, 0, 2      # weights 1, 1, 3
    run_pass(farm)
    assert running_per_job(farm, a, b, c) == [2, 2, 6]


def test_equal_jobs_split_evenly_and_the_oldest_gets_the_remainder():
    farm = make_farm()
    for i in range(10):
        add_rn(farm, f"rn{i}:8000", cores=1)
    jobs = [submit(farm, task(f"j{i}", frames=(1, 20))) for i in range(3)]
    run_pass(farm)
    assert running_per_job(farm, *jobs) == [4, 3, 3]


def test_user_max_rn_is_served_first_and_capped():
    farm = make_farm()
    for i in range(10):
        add_rn(farm, f"rn{i}:8000", cores=1)
    fair = submit(farm, task("fair", frames=(1, 50)))
    capped = submit(farm, task("capped", frames=(1, 50)), maxRN=3)
    run_pass(farm)
    assert running_per_job(farm, fair, capped) == [7, 3]


def test_a_job_that_cannot_use_its_share_leaves_it_to_others():
    farm = make_farm()
    for i in range(10):
        add_rn(farm, f"rn{i}:8000", cores=1)
    small = submit(farm, task("small", frames=(1, 2)))
    big = submit(farm, task("big", frames=(1, 50)))
    run_pass(farm)
    assert running_per_job(farm, small, big) == [2, 8]


def test_graph_and_node_max_rn_apply():
    farm = make_farm()
    add_rn(farm, "big:8000", cores=32)
    job = submit(farm, task("a", frames=(1, 5), minNbCores=1, maxNbCores=1),
                 task("b", frames=(1, 20), minNbCores=1, maxNbCores=1, maxRN=2),
                 task("c", frames=(1, 20), minNbCores=1, maxNbCores=1), maxRN=10)
    run_pass(farm)
    a, b, c = job.children
    assert (job.active_count, a.active_count, b.active_count, c.active_count) == (10, 5, 2, 3)


def test_multi_slot_node_runs_four_4_core_commands():
    farm = make_farm()
    rn = add_rn(farm, "n:8000", cores=16, ram=64000)
    submit(farm, task("t", frames=(1, 8), minNbCores=4, maxNbCores=4, ramUse=1000))
    sent = run_pass(farm)
    assert len(sent) == 4
    assert rn.free_cores == 0 and rn.free_ram == 60000
    assert all(cmd.cores == 4 for _, cmd in sent)
    report(farm, sent[0][1], CS.DONE)
    assert rn.free_cores == 4
    assert len(run_pass(farm)) == 1


def test_default_command_takes_every_free_core_and_zero_takes_the_whole_node():
    farm = make_farm()
    rn = add_rn(farm, "n:8000", cores=8)
    submit(farm, task("t", frames=(1, 1), minNbCores=2, maxNbCores=2))
    run_pass(farm)
    submit(farm, task("rest", frames=(1, 2)))
    sent = run_pass(farm)
    assert [cmd.cores for _, cmd in sent] == [6]
    submit(farm, task("whole", frames=(1, 1), minNbCores=0))
    assert run_pass(farm) == []
    for cmd in list(rn.commands.values()):
        report(farm, cmd, CS.DONE)
    # the remaining "rest" frame and "whole" compete; whichever gets it, nothing overlaps the whole node
    sent = run_pass(farm)
    assert sum(cmd.cores for _, cmd in sent) <= 8


def test_ram_must_fit_what_the_node_reports_free():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=8, ram=32000)
    worker_protocol.heartbeat(farm, "n:8000", {"systemFreeRam": 3000}, 0.0)
    submit(farm, task("t", frames=(1, 1), ramUse=4000))
    assert run_pass(farm) == []
    worker_protocol.heartbeat(farm, "n:8000", {"systemFreeRam": 5000}, 0.0)
    assert len(run_pass(farm)) == 1


def test_requirements_match_caracteristics_and_skip_to_sibling_tasks():
    farm = make_farm()
    add_rn(farm, "linux:8000", cores=1, os="linux", softs=["nuke"], memory_gb=32)
    submit(farm, task("maya", frames=(1, 1), requirements={"softs": ["maya"]}),
                 task("nuke", frames=(1, 1), requirements={"softs": ["nuke"], "os": "linux", "memory_gb": 16}))
    sent = run_pass(farm)
    assert [cmd.task.name for _, cmd in sent] == ["nuke"]


def test_pools_keep_jobs_on_their_nodes_and_a_node_may_be_in_several():
    farm = make_farm()
    add_rn(farm, "a:8000", cores=1, pools=["gpu"])
    add_rn(farm, "b:8000", cores=1)
    submit(farm, task("g", frames=(1, 5)), poolName="gpu")
    sent = run_pass(farm)
    assert [rn for rn, _ in sent] == ["a:8000"]
    assert farm.render_nodes["a:8000"].pools[0].name == "default"
    other = submit(farm, task("d", frames=(1, 5)))
    assert [rn for rn, _ in run_pass(farm)] == ["b:8000"]
    job_operations.set_pool(farm, other, "gpu")
    assert other.share.pool.name == "gpu"


def test_licenses_are_taken_all_or_none():
    farm = make_farm()
    for i in range(4):
        add_rn(farm, f"rn{i}:8000", cores=1)
    farm.set_license("nuke", 3)
    farm.set_license("mtoa", 1)
    submit(farm, task("both", frames=(1, 5), lic="nuke&mtoa"))
    submit(farm, task("nuke", frames=(1, 5), lic="nuke"))
    sent = run_pass(farm)
    assert len(sent) == 3
    assert farm.licenses["nuke"].used == 3 and farm.licenses["mtoa"].used == 1
    cmd = next(cmd for _, cmd in sent if cmd.task.name == "both")
    report(farm, cmd, CS.DONE)
    assert farm.licenses["mtoa"].used == 0 and farm.licenses["nuke"].used == 2


def test_timer_holds_a_task_until_its_time():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    submit(farm, task("later", frames=(1, 1), timer=1000.0))
    assert run_pass(farm, now=999.0) == []
    assert len(run_pass(farm, now=1000.0)) == 1


def test_timer_on_a_group_holds_every_task_below_it():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("a"), task("b"))
    job.timer = 500.0
    assert run_pass(farm, now=499.0) == []
    assert len(run_pass(farm, now=500.0)) == 1


def test_dependency_blocks_until_target_done_then_releases():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("render", frames=(1, 1)), task("comp", frames=(1, 1), dependencies=[[1, [NS.DONE]]]))
    render, comp = job.children
    assert comp.status == NS.BLOCKED and comp.commands[0].status == CS.BLOCKED
    (_, cmd), = run_pass(farm)
    assert cmd.task is render
    report(farm, cmd, CS.DONE)
    assert comp.status == NS.READY
    (_, cmd), = run_pass(farm)
    assert cmd.task is comp


def test_dependency_on_a_task_group_and_across_jobs():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    first = submit(farm, task("a", frames=(1, 2)), group=True)
    second = submit(farm, {"type": "Task", "name": "b", "arguments": {},
                           "dependencies": [[{"nodeId": first.id}, [NS.DONE]]]})
    assert second.status == NS.BLOCKED
    for _ in range(2):
        (_, cmd), = run_pass(farm)
        assert cmd.task.job is first
        report(farm, cmd, CS.DONE)
    assert first.status == NS.DONE and second.status == NS.READY


def test_dependency_on_error_status_list():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("a"), task("cleanup", dependencies=[[1, [NS.DONE, NS.ERROR]]]))
    (_, cmd), = run_pass(farm)
    report(farm, cmd, CS.ERROR)
    assert job.children[1].status == NS.READY


def test_cycles_are_refused_at_submission():
    farm = make_farm()
    with pytest.raises(InvalidGraph, match="cycle"):
        submit(farm, task("a", dependencies=[[2, [NS.DONE]]]), task("b", dependencies=[[1, [NS.DONE]]]))
    with pytest.raises(InvalidGraph, match="cycle"):
        submit(farm, task("child", dependencies=[[0, [NS.DONE]]]), group=True)
    assert farm.root.children == []


def test_failed_command_is_retried_after_the_delay_until_max_attempt():
    farm = make_farm(retry_delay=20.0)
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("t", maxAttempt=2))
    (_, cmd), = run_pass(farm)
    report(farm, cmd, CS.ERROR, now=1.0, message="exit code 1")
    assert cmd.status == CS.ERROR and cmd.attempt == 1
    farm.process_retries(20.9)
    assert cmd.status == CS.ERROR
    farm.process_retries(21.0)
    assert cmd.status == CS.READY
    (_, cmd), = run_pass(farm, now=22.0)
    report(farm, cmd, CS.ERROR, now=23.0)
    farm.process_retries(100.0)
    assert cmd.status == CS.ERROR and cmd.attempt == 2 and job.status == NS.ERROR


def test_job_avoids_a_node_after_errors_there():
    farm = make_farm(job_rn_error_limit=2, quarantine_threshold=0)
    add_rn(farm, "bad:8000", cores=1)
    submit(farm, task("t", frames=(1, 5)))
    for _ in range(2):
        (_, cmd), = run_pass(farm)
        report(farm, cmd, CS.ERROR)
    assert run_pass(farm) == []
    add_rn(farm, "good:8000", cores=1)
    assert [rn for rn, _ in run_pass(farm)] == ["good:8000"]


def test_errors_of_a_single_job_do_not_quarantine_a_node():
    farm = make_farm(quarantine_threshold=3, job_rn_error_limit=0)
    rn = add_rn(farm, "n:8000", cores=1)
    submit(farm, task("broken", frames=(1, 5)))
    for _ in range(4):
        (_, cmd), = run_pass(farm)
        report(farm, cmd, CS.ERROR)
    assert not rn.quarantined


def test_node_failing_several_jobs_is_quarantined_until_cleared():
    farm = make_farm(quarantine_threshold=3, job_rn_error_limit=1)
    rn = add_rn(farm, "bad:8000", cores=1)
    for i in range(4):
        submit(farm, task(f"j{i}", frames=(1, 3)))
    for _ in range(3):
        (_, cmd), = run_pass(farm)
        report(farm, cmd, CS.ERROR)
    assert rn.quarantined
    assert run_pass(farm) == []
    render_node_admin.set_quarantine(farm, rn, False)
    assert len(run_pass(farm)) == 1


def test_silent_node_times_out_and_its_commands_too():
    farm = make_farm(rn_timeout=30.0)
    rn = add_rn(farm, "n:8000", cores=1, now=0.0)
    submit(farm, task("t"))
    (_, cmd), = run_pass(farm)
    farm.check_liveness(29.0)
    assert rn.status != RS.UNKNOWN
    farm.check_liveness(31.0)
    assert rn.status == RS.UNKNOWN and cmd.status == CS.TIMEOUT
    assert rn.free_cores == 1


def test_a_timed_out_assignment_is_over_and_its_late_reports_are_refused():
    farm = make_farm(rn_timeout=30.0)
    rn = add_rn(farm, "n:8000", cores=1)
    submit(farm, task("t", maxAttempt=3))
    (_, cmd), = run_pass(farm)
    old = cmd.assignment
    farm.check_liveness(31.0)
    assert cmd.status == CS.TIMEOUT and cmd.attempt == 1
    # The node comes back and reports the run it lost (its watcher died with the host).
    for status in (CS.RUNNING, CS.ERROR):
        with pytest.raises(StaleAssignment):
            worker_protocol.command_update(farm, "n:8000", cmd.id, {"assignment": old, "status": int(status)}, 32.0)
    assert cmd.status == CS.TIMEOUT and cmd.attempt == 1 and rn.alive and rn.free_cores == 1
    stop = worker_protocol.register(farm, "n:8000", {"cores": 1, "ram": 16000},
                            [{"id": cmd.id, "assignment": old, "status": int(CS.ERROR)}], 33.0)
    assert stop == [cmd.id] and cmd.status == CS.TIMEOUT and cmd.attempt == 1


def test_a_timeout_waits_for_an_operator_unless_the_farm_retries_timeouts():
    for retry_timeouts, after in ((False, CS.TIMEOUT), (True, CS.READY)):
        farm = make_farm(rn_timeout=30.0, retry_delay=20.0, retry_timeouts=retry_timeouts)
        add_rn(farm, "n:8000", cores=1)
        submit(farm, task("t", maxAttempt=3))
        (_, cmd), = run_pass(farm)
        farm.check_liveness(31.0)
        farm.process_retries(60.0)
        assert cmd.status == after, retry_timeouts


def test_cancel_of_assigned_command_sticks_and_late_report_is_refused():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("t"))
    (_, cmd), = run_pass(farm)
    old = cmd.assignment
    job_operations.cancel(farm, job, 1.0)
    assert Stop(farm.render_nodes["n:8000"], cmd.id, old) in farm.take_outbox()
    with pytest.raises(StaleAssignment):
        worker_protocol.command_update(farm, "n:8000", cmd.id, {"assignment": old, "status": int(CS.RUNNING)}, 2.0)
    assert cmd.status == CS.CANCELED and job.status == NS.CANCELED


def test_report_from_a_previous_run_is_refused_after_restart():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("t"))
    (_, cmd), = run_pass(farm)
    old = cmd.assignment
    report(farm, cmd, CS.ERROR)
    job_operations.restart(farm, job, 1.0)
    (_, again), = run_pass(farm)
    assert again is cmd and cmd.assignment != old
    with pytest.raises(StaleAssignment):
        worker_protocol.command_update(farm, "n:8000", cmd.id, {"assignment": old, "status": int(CS.DONE)}, 2.0)
    assert cmd.status == CS.ASSIGNED


def test_a_restart_leaves_what_runs_alone_and_says_so():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=2)
    job = submit(farm, task("t1", maxNbCores=1), task("t2", maxNbCores=1))
    (_, running), (_, done) = run_pass(farm)
    report(farm, running, CS.RUNNING)
    report(farm, done, CS.DONE)
    farm.take_outbox()
    assignment = running.assignment
    for restart in (lambda: job_operations.restart(farm, job, 5.0),
                    lambda: job_operations.set_node_status(farm, job, 1, 5.0),
                    lambda: job_operations.retry(farm, job, 5.0, frozenset({CS.RUNNING, CS.DONE}))):
        changes = restart()
        assert changes.left_alone == [running]
        assert running.status == CS.RUNNING and running.assignment == assignment and running.attempt == 0
        assert done.status == CS.READY
        assert not [m for m in farm.take_outbox() if isinstance(m, Stop)], "a restart stopped a running command"
    with pytest.raises(Conflict):
        job_operations.set_command_status(farm, running, CS.READY, 6.0)
    assert running.status == CS.RUNNING and running.assignment == assignment


def test_reregistration_keeps_what_the_worker_still_runs_and_requeues_the_rest():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=2)
    submit(farm, task("t", frames=(1, 2), maxNbCores=1))
    (_, a), (_, b) = run_pass(farm)
    stop = worker_protocol.register(farm, "n:8000", {"cores": 2, "ram": 16000},
                            [{"id": a.id, "assignment": a.assignment, "status": int(CS.RUNNING)},
                             {"id": 999, "assignment": 5, "status": int(CS.RUNNING)}], 5.0)
    assert stop == [999]
    assert a.status == CS.RUNNING and b.status == CS.READY
    assert farm.render_nodes["n:8000"].free_cores == 1


def test_pause_holds_new_work_and_pause_kill_requeues_running():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=2)
    job = submit(farm, task("t", frames=(1, 4), maxNbCores=1))
    job_operations.pause(farm, job, True, 0.0)
    assert run_pass(farm) == [] and job.status == NS.PAUSED
    job_operations.pause(farm, job, False, 0.0)
    assert len(run_pass(farm)) == 2
    job_operations.pause(farm, job, True, 1.0, kill=True)
    assert job.active_count == 0 and job.status == NS.PAUSED
    assert sum(1 for m in farm.take_outbox() if isinstance(m, Stop)) == 2


def test_restart_cascades_to_dependents():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("a"), task("b", dependencies=[[1, [NS.DONE]]]))
    a, b = job.children
    for _ in range(2):
        (_, cmd), = run_pass(farm)
        report(farm, cmd, CS.DONE)
    assert job.status == NS.DONE
    job_operations.restart(farm, a, 10.0)
    assert a.status == NS.READY and b.status == NS.BLOCKED and job.completion == 0.0


def test_retry_errors_only_leaves_done_commands_alone():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("t", frames=(1, 2)))
    (_, a), = run_pass(farm)
    report(farm, a, CS.DONE)
    (_, b), = run_pass(farm)
    report(farm, b, CS.ERROR)
    assert job_operations.retry(farm, job, 5.0).changed == 1
    assert a.status == CS.DONE and b.status == CS.READY


def test_one_canceled_frame_does_not_hide_the_rest_of_the_task():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("t", frames=(1, 3)))
    job_operations.set_command_status(farm, job.commands[0], CS.CANCELED, 0.0)
    assert job.status == NS.READY
    job_operations.force_done(farm, job, 1.0)
    assert job.status == NS.DONE and job.completion == 1.0


def test_paused_render_node_gets_nothing_and_stays_paused_after_its_command():
    farm = make_farm()
    rn = add_rn(farm, "n:8000", cores=2)
    submit(farm, task("t", frames=(1, 3), maxNbCores=1))
    (_, cmd), _ = run_pass(farm)
    render_node_admin.set_render_node_paused(farm, rn, True)
    report(farm, cmd, CS.DONE)
    assert rn.status == RS.PAUSED and run_pass(farm) == []


def test_status_and_completion_aggregate_up_the_tree():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=4)
    job = submit(farm, task("t", frames=(1, 4), maxNbCores=1))
    sent = run_pass(farm)
    report(farm, sent[0][1], CS.RUNNING, completion=0.5)
    report(farm, sent[1][1], CS.DONE)
    assert job.completion == pytest.approx(1.5 / 4)
    assert farm.root.counts[CS.DONE] == 1 and job.counts[CS.RUNNING] == 1


def test_tasks_are_tried_in_submission_order_even_after_a_requeue():
    farm = make_farm()
    add_rn(farm, "n:8000", cores=1)
    job = submit(farm, task("first"), task("second", frames=(1, 3)))
    (_, cmd), = run_pass(farm)
    assert cmd.task.name == "first"
    report(farm, cmd, CS.ERROR)
    job_operations.retry(farm, job, 1.0)       # "first" is ready again, after "second" joined the queue
    (_, cmd), = run_pass(farm)
    assert cmd.task.name == "first"


def test_render_node_shows_working_once_its_command_runs():
    farm = make_farm()
    rn = add_rn(farm, "n:8000", cores=1)
    submit(farm, task("t"))
    (_, cmd), = run_pass(farm)
    assert rn.status == RS.ASSIGNED
    report(farm, cmd, CS.RUNNING)
    assert rn.status == RS.WORKING


def test_node_that_refused_an_assignment_gets_nothing_until_heard_from_but_still_times_out():
    farm = make_farm(rn_timeout=30.0)
    rn = add_rn(farm, "n:8000", cores=2)
    submit(farm, task("t", frames=(1, 3), maxNbCores=1))
    (_, running), (_, refused) = run_pass(farm)
    farm.requeue(refused, 1.0)
    worker_protocol.unreachable(farm, rn)
    assert run_pass(farm) == []
    farm.check_liveness(31.0)
    assert running.status == CS.TIMEOUT
    worker_protocol.heartbeat(farm, "n:8000", {}, 32.0)
    assert len(run_pass(farm, now=32.0)) == 2
