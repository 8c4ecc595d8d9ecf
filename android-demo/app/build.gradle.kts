plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "io.edgeopt.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "io.edgeopt.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets["main"].assets.srcDir(layout.buildDirectory.dir("generated/edgeopt-assets"))

    androidResources {
        // Models are read whole; leaving them uncompressed keeps the APK fast to open them.
        noCompress += listOf("onnx", "tflite")
    }
}

kotlin {
    jvmToolchain(17)
}

// The bundle ships as assets/bundle/: copied from -PedgeoptBundle (default ../bundles/pixel8) at build time,
// so no model file is committed.
val bundleDir = rootProject.file(providers.gradleProperty("edgeoptBundle").get())
val copyBundle by tasks.registering(Sync::class) {
    from(bundleDir)
    into(layout.buildDirectory.dir("generated/edgeopt-assets/bundle"))
    doFirst {
        check(File(bundleDir, "manifest.json").isFile) {
            "no bundle at $bundleDir: run `edgeopt build --profile pixel8` in the repository root, or pass -PedgeoptBundle=DIR"
        }
    }
}
tasks.named("preBuild") { dependsOn(copyBundle) }

dependencies {
    implementation(project(":core"))
    implementation("com.microsoft.onnxruntime:onnxruntime-android:1.32.0")
    implementation("com.google.ai.edge.litert:litert:1.4.0")
}
