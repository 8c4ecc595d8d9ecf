package io.edgeopt.core

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit

/** Same keys as the runtime, and each side reads the other's cache database. */
class CacheParityTest {
    private val cacheInfo: JSONObject get() = Golden.json.getJSONObject("cache")
    private val clock: Double get() = cacheInfo.getDouble("clock")

    private fun options(backend: String) = keyOptions(backend, Golden.labels, Golden.maxSeqLen)

    @TestFactory
    fun `cache keys and normalized texts equal the runtime's`(): List<DynamicTest> = Golden.validCases.map { case ->
        DynamicTest.dynamicTest(case.getString("name")) {
            val text = cleanText(case.getString("text"))
            assertEquals(case.getString("normalized_text"), normalizeText(text))
            val backends = case.getJSONObject("backends")
            for (backend in backends.keys().asSequence().map { it.toString() }) {
                assertEquals(backends.getJSONObject(backend).getString("cache_key"), cacheKey(Golden.fingerprint, text, options(backend)), backend)
            }
        }
    }

    @Test
    fun `key options are serialized like the runtime's`() {
        val golden = Golden.json.getJSONObject("backends")
        for (backend in golden.keys().asSequence().map { it.toString() }) {
            val want = golden.getJSONObject(backend).getJSONObject("key_options")
            val got = options(backend)
            assertEquals(want.keys().asSequence().map { it.toString() }.toSet(), got.keys)
            got.forEach { (k, v) -> assertEquals(want.getString(k), v, k) }
        }
        for (case in Golden.json.getJSONArray("key_cases").objects()) {
            val opts = keyOptions(case.getString("backend"), case.getJSONArray("labels").strings(), case.getInt("max_seq_len"))
            assertEquals(case.getString("options"), opts.entries.sortedBy { it.key }.joinToString(";") { "${it.key}=${it.value}" })
            assertEquals(case.getString("key"), cacheKey(case.getString("fingerprint"), case.getString("text"), opts), case.getString("options"))
        }
    }

    private fun pythonCache(at: Double = clock): Pair<ResultCache, File> {
        val file = Golden.copy(cacheInfo.getString("file"))
        return ResultCache(JdbcSqlDatabase.open(file), clock = { at }) to file
    }

    @Test
    fun `the app reads the cache database written by the Python runtime`() {
        val (cache, file) = pythonCache()
        cache.use {
            val rows = JdbcSqlDatabase.open(file).use { db -> db.query("SELECT key, value, text FROM results") { Triple(it.string(0)!!, it.string(1)!!, it.string(2)) } }
                .associateBy { it.first }
            for (case in Golden.validCases) {
                val want = case.getJSONObject("backends").getJSONObject(cacheInfo.getString("backend"))
                val key = want.getString("cache_key")
                val value = cache.get(key) ?: throw AssertionError("${case.getString("name")}: no entry for the Kotlin key $key")
                val result = CachedResult.fromJson(value, Golden.labels)!!
                assertEquals(want.getString("label"), result.label)
                val scores = want.getJSONArray("scores").doubles()
                Golden.labels.forEachIndexed { i, l -> assertEquals(scores[i], result.scores.getValue(l), 0.0) }
                assertEquals(case.getBoolean("truncated"), result.truncated)
                // The Kotlin serializer writes the very bytes Python wrote (sizes and max_bytes agree).
                assertEquals(value, result.toJson(), "${case.getString("name")}: value JSON differs from Python's")
                assertEquals(case.getString("normalized_text"), rows.getValue(key).third)
            }
            assertEquals(Golden.validCases.size.toLong(), cache.stats().hits) // Python's run had no hits
        }
    }

    @Test
    fun `expired entries are misses and other fingerprints are purged`() {
        val (cache, file) = pythonCache()
        cache.use {
            val expired = cacheInfo.getString("expired_key")
            val foreign = cacheInfo.getString("foreign_key")
            val misses = cache.stats().misses // the counters live in the file: Python's misses are in it
            assertNull(cache.get(expired))
            assertEquals(misses + 1, cache.stats().misses)
            assertNotNull(cache.get(foreign))
            assertEquals(1, cache.keepOnly(Golden.fingerprint))
            assertNull(cache.get(foreign))
            assertEquals(Golden.validCases.size.toLong(), cache.stats().entries)
        }
        JdbcSqlDatabase.open(file).use { db ->
            assertEquals(0L, db.query("SELECT count(*) FROM results WHERE key = ?", cacheInfo.getString("expired_key")) { it.long(0) }.single())
        }
        // A week and a day later every entry has expired.
        val (later, _) = pythonCache(clock + cacheInfo.getDouble("ttl_s") + 1)
        later.use { c -> assertNull(c.get(Golden.validCases.first().getJSONObject("backends").getJSONObject("onnx").getString("cache_key"))) }
    }

    @Test
    fun `the Python runtime reads a cache database written by the app`() {
        val python = System.getProperty("edgeopt.python")
        assumeTrue(!python.isNullOrEmpty(), "-Dedgeopt.python is not set (run-tests.sh sets it when the venv exists)")
        val file = File(Files.createTempDirectory("kcache").toFile(), "results.sqlite")
        val written = LinkedHashMap<String, CachedResult>()
        ResultCache(JdbcSqlDatabase.open(file), clock = { clock }, storeText = true).use { cache ->
            for (case in Golden.validCases) {
                val g = case.getJSONObject("backends").getJSONObject("onnx")
                val scores = g.getJSONArray("scores").doubles()
                val value = CachedResult(g.getString("label"), g.getDouble("score"), Golden.labels.indices.associate { Golden.labels[it] to scores[it] }, case.getBoolean("truncated"))
                val key = cacheKey(Golden.fingerprint, cleanText(case.getString("text")), options("onnx"))
                cache.put(key, Golden.fingerprint, value.toJson(), case.getString("text"))
                written[key] = value
            }
        }
        val script = """
            import json, sys, warnings
            warnings.simplefilter("error")  # a CacheWarning (unreadable file, newer schema) must fail the test
            from edgeopt_runtime import ResultCache
            cache = ResultCache(sys.argv[1], clock=lambda: float(sys.argv[2]))
            print(json.dumps({"values": {k: cache.get(k) for k in sys.argv[3:]}, "stats": cache.stats().to_dict()}))
        """.trimIndent()
        val process = ProcessBuilder(listOf(python, "-c", script, file.path, clock.toString()) + written.keys).redirectErrorStream(true).start()
        val output = process.inputStream.bufferedReader().readText()
        assertEquals(true, process.waitFor(120, TimeUnit.SECONDS))
        assertEquals(0, process.exitValue(), output)
        val answer = JSONObject(output.lines().last { it.isNotBlank() })
        val values = answer.getJSONObject("values")
        for ((key, value) in written) {
            val got = values.optJSONObject(key) ?: throw AssertionError("Python found no entry for $key: $output")
            assertEquals(value, CachedResult.fromJson(got.toString(), Golden.labels))
        }
        assertEquals(written.size.toLong(), answer.getJSONObject("stats").getLong("hits"))
    }
}
