package io.edgeopt.core

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import java.io.File
import java.nio.file.Files

/**
 * The whole path the app takes (tokenize, model, post-process, cache) on the golden bundle. The model is a replay
 * of the real ONNX model's outputs: it answers the Python-recorded logits for exactly the ids Python fed it, and
 * fails for any other input, so the test also proves the ids reaching the backend are the Python ones.
 */
class TextClassifierTest {
    private class ReplayModel : TextModel {
        override val backend = "onnx"
        var calls = 0
        private val logits = Golden.validCases.associate { c ->
            c.getJSONArray("input_ids").longs().toList() to c.getJSONObject("backends").getJSONObject("onnx").getJSONArray("logits").doubles()
        }

        override fun run(inputIds: List<LongArray>, attentionMask: List<LongArray>): Logits {
            calls++
            return Logits.Float32(inputIds.map { ids ->
                val row = logits[ids.toList()] ?: throw AssertionError("the model got ids Python never produced: ${ids.take(12)}")
                FloatArray(row.size) { row[it].toFloat() }
            })
        }
    }

    private fun expected(case: org.json.JSONObject) = case.getJSONObject("backends").getJSONObject("onnx")

    @Test
    fun `predictions equal the runtime's and the second call comes from the cache`() {
        val model = ReplayModel()
        val file = File(Files.createTempDirectory("clf").toFile(), "results.sqlite")
        val cache = ResultCache(JdbcSqlDatabase.open(file), Golden.secret, clock = { 1.0e9 })
        TextClassifier(Golden.manifest, Golden.tokenizer, model, cache).use { clf ->
            val texts = Golden.validCases.map { it.getString("text") }
            val first = clf.predictBatch(texts)
            assertEquals(1, model.calls)
            first.zip(Golden.validCases).forEach { (p, case) ->
                assertEquals(expected(case).getString("label"), p.label, case.getString("name"))
                assertEquals(expected(case).getDouble("score"), p.score, 1e-12)
                assertEquals(case.getBoolean("truncated"), p.truncated)
                assertEquals(false, p.cached)
            }
            val again = clf.predict(texts.first())
            assertEquals(true, again.cached)
            assertEquals(first.first().copy(cached = true, latencyMs = again.latencyMs), again)
            assertEquals(1, model.calls)
            assertEquals(expected(Golden.validCases.first()).getString("cache_key"), clf.cacheKey(texts.first()))
            // The monitor saw every answer, the cache hit included, against the bundle's reference.
            val report = clf.monitor.report()
            assertEquals(texts.size + 1, report.window)
            assertEquals(1.0 / (texts.size + 1), report.cacheHitShare, 1e-12)
            assertEquals(true, clf.monitor.reference != null && clf.monitoringError == null)
        }
    }

    @Test
    fun `with the Python runtime's cache file every answer is a hit`() {
        val model = ReplayModel()
        val info = Golden.json.getJSONObject("cache")
        val cache = ResultCache(JdbcSqlDatabase.open(Golden.copy(info.getString("file"))), Golden.secret, clock = { info.getDouble("clock") })
        TextClassifier(Golden.manifest, Golden.tokenizer, model, cache).use { clf ->
            val predictions = clf.predictBatch(Golden.validCases.map { it.getString("text") })
            assertEquals(0, model.calls)
            predictions.zip(Golden.validCases).forEach { (p, case) ->
                assertEquals(true, p.cached)
                assertEquals(expected(case).getString("label"), p.label)
            }
        }
    }

    @Test
    fun `empty text is refused with the runtime's message, and a cache failure does not break predictions`() {
        val file = File(Files.createTempDirectory("clf").toFile(), "results.sqlite")
        val cache = ResultCache(JdbcSqlDatabase.open(file), loadOrCreateSecret(File(file.path + ".key")))
        val clf = TextClassifier(Golden.manifest, Golden.tokenizer, ReplayModel(), cache)
        assertEquals("text is empty or whitespace only; pass at least one word", assertThrows<InputError> { clf.predict("") }.message)
        cache.close() // every later cache call fails
        val p = clf.predict(Golden.validCases.first().getString("text"))
        assertEquals(expected(Golden.validCases.first()).getString("label"), p.label)
        assertEquals(true, clf.cacheError != null)
    }
}
