package io.edgeopt.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import kotlin.math.abs
import kotlin.math.ln

/** The monitor against the Python runtime's: the same observations must give the same reports (goldens). */
class MonitorTest {
    private val golden = Golden.json.getJSONObject("monitor")
    private val reference = MonitorReference.fromManifest(Golden.manifest) { throw it }

    private fun close(expected: Double, actual: Double, what: String) =
        assertEquals(expected, actual, 1e-12 * maxOf(1.0, abs(expected)), what)

    @Test
    fun `replayed observations give the Python monitor's reports`() {
        assertNotNull(reference, "the golden manifest has a monitoring reference; ${REGENERATE}")
        val monitor = Monitor(Golden.labels, reference, golden.getInt("window"))
        val observations = golden.getJSONArray("observations")
        var done = 0
        for (checkpoint in golden.getJSONArray("reports").objects()) {
            val after = checkpoint.getInt("after")
            for (i in done until after) {
                val o = observations.getJSONArray(i)
                monitor.observe(o.getString(0), o.getDouble(1), o.getBoolean(2), o.getBoolean(3), o.getDouble(4))
            }
            done = after
            val want = checkpoint.getJSONObject("report")
            val got = monitor.report()
            val at = "after $after"
            assertEquals(want.getLong("observed"), got.observed, at)
            assertEquals(want.getInt("window"), got.window, at)
            val shares = want.getJSONObject("label_share")
            Golden.labels.forEach { close(shares.getDouble(it), got.labelShare.getValue(it), "$at label $it") }
            want.getJSONArray("confidence_share").doubles().forEachIndexed { i, s -> close(s, got.confidenceShare[i], "$at bin $i") }
            close(want.getDouble("low_confidence_share"), got.lowConfidenceShare, "$at low confidence")
            close(want.getDouble("truncated_share"), got.truncatedShare, "$at truncated")
            close(want.getDouble("cache_hit_share"), got.cacheHitShare, "$at cache hits")
            if (want.isNull("latency_p50_ms")) {
                assertNull(got.latencyP50Ms, at)
            } else {
                close(want.getDouble("latency_p50_ms"), got.latencyP50Ms!!, "$at p50")
                close(want.getDouble("latency_p95_ms"), got.latencyP95Ms!!, "$at p95")
            }
            if (want.isNull("drift")) {
                assertNull(got.drift, at)
            } else {
                val drift = want.getJSONObject("drift")
                val gotDrift = got.drift ?: throw AssertionError("$at: no drift, expected $drift")
                close(drift.getDouble("label_psi"), gotDrift.labelPsi, "$at label PSI")
                close(drift.getDouble("confidence_psi"), gotDrift.confidencePsi, "$at confidence PSI")
                assertEquals(drift.getString("status"), gotDrift.status, at)
            }
        }
        // The goldens cover the window filling, overflowing, and drift appearing at MIN_DRIFT_TEXTS.
        val windows = golden.getJSONArray("reports").objects().map { it.getJSONObject("report").getInt("window") }
        assertTrue(windows.contains(0) && windows.contains(MIN_DRIFT_TEXTS) && windows.last() == golden.getInt("window"), "$windows")
    }

    @Test
    fun `psi, bins and status thresholds`() {
        assertEquals(0.0, psi(doubleArrayOf(0.5, 0.5), doubleArrayOf(0.5, 0.5)))
        close(0.2 * ln(0.7 / 0.5) - 0.2 * ln(0.3 / 0.5), psi(doubleArrayOf(0.5, 0.5), doubleArrayOf(0.7, 0.3)), "psi")
        assertThrows<InputError> { psi(doubleArrayOf(1.0), doubleArrayOf(0.5, 0.5)) }
        assertEquals(listOf(0, 0, 1, 2, 6, 7, 7), listOf(0.0, 0.49, 0.5, 0.6, 0.95, 0.99, 1.0).map(::confidenceBin))
        val ref = MonitorReference(100, mapOf("ham" to 0.5, "spam" to 0.5), DoubleArray(8) { if (it == 7) 1.0 else 0.0 }, 0.0, "")
        assertEquals("stable", Drift.between(ref, mapOf("ham" to 0.5, "spam" to 0.5), ref.confidenceShare).status)
        assertEquals("moderate shift", Drift.between(ref, mapOf("ham" to 0.3, "spam" to 0.7), ref.confidenceShare).status)
        assertEquals("significant shift", Drift.between(ref, mapOf("ham" to 0.1, "spam" to 0.9), ref.confidenceShare).status)
    }

    @Test
    fun `a malformed reference is reported and ignored, and the window is bounded`() {
        val bad = JSONObject("{\"version\": 1, \"label_share\": {\"x\": 1.0}}")
        val message = assertThrows<InputError> { MonitorReference.fromJson(bad, Golden.labels) }.message!!
        assertTrue(message.contains("exactly the labels"), message)
        assertThrows<InputError> { Monitor(Golden.labels, window = 0) }
        val monitor = Monitor(Golden.labels, window = 3)
        repeat(5) { monitor.observe(Golden.labels[it % 2], 0.995, it == 4, false, it.toDouble()) }
        val report = monitor.report()
        assertEquals(5L, report.observed)
        assertEquals(3, report.window)
        close(1.0 / 3, report.truncatedShare, "truncated")
        assertEquals(3.0, report.latencyP50Ms)
        monitor.reset()
        assertEquals(0, monitor.report().window)
    }
}
